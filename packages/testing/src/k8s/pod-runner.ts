import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../redis-server.js';
import type { KubeObject, KubeRest } from './kube-rest.js';

/** Pods with this annotation are skipped by the harness's kwok stages: their status and deletion are ours. */
export const KWOK_CUSTOM_STATUS = { 'kwok.x-k8s.io/status': 'custom' } as const;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  command?: string[];
  env?: EnvVar[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: { exec?: { command: string[] } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
export interface RunnerPod extends KubeObject {
  metadata: KubeObject['metadata'] & {
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: { nodeName?: string; containers: Container[]; terminationGracePeriodSeconds?: number };
  status?: { phase?: string; podIP?: string; hostIP?: string };
}

export interface PodRunnerOptions {
  rest: KubeRest;
  namespace: string;
  /** Which pods to run, e.g. `smelterfleet.dev/fleet=shows`; only those annotated KWOK_CUSTOM_STATUS are taken. */
  labelSelector: string;
  /** argv of the sidecar container, e.g. `[node, cli/dist/bin.js, 'sidecar']`. Required. */
  sidecarCommand: string[];
  /** argv standing in for the Smelter image (the emulator). Required. */
  smelterCommand: string[];
  /** argv prefix of a Supervisor-mode container's supervisor, e.g. `[node, cli/dist/bin.js, 'supervise', '--']`. */
  superviseCommand?: string[];
  /** Called with every line the processes print (debugging). Default: dropped. */
  onOutput?: (pod: string, container: string, line: string) => void;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface RunningPod {
  name: string;
  uid: string;
  dir: string;
  procs: Map<string, Proc>;
  /** The pod's hooks and probes, rewritten to the local ports and directories. */
  rewrite: (argv: string[]) => string[];
  sidecarContainer: string;
  deleting: boolean;
  statusChain: Promise<void>;
  ready: boolean;
  watchAbort: AbortController;
}

const SERVING = ['Ready', 'Allocated', 'Draining'];

/**
 * TEST-ONLY stand-in for the kubelet's container runtime on kwok nodes. kwok fakes node and pod status but runs
 * nothing; for the pods this runner takes (annotated `kwok.x-k8s.io/status: custom`, which the harness's kwok stages
 * leave alone) it does what a kubelet would with real processes on this machine: runs the pod's sidecar container
 * (`smelter-fleet sidecar` from this checkout) and the Smelter emulator in place of the Smelter image, with the
 * pod's env (Secret references resolved) but free local ports instead of the pod's own network; writes the pod's
 * status (Running, container states, Ready from the pod's own readiness probe command run on each change of the
 * sidecar's server); and on deletion runs the sidecar's preStop hook, SIGINTs the emulator once the hook is done
 * (what the Smelter container's preStop does), SIGTERMs the sidecar, and deletes the pod when both have exited (or
 * the grace period ran out: SIGKILL). It reports a process that dies as a terminated container. It stands in for
 * images, networking and the kubelet, nothing else: the API server, scheduler, sidecar, allocator and controller
 * are the real ones. Not for production, and not a general kubelet: one node of processes, loopback only.
 */
export class PodRunner {
  /** Every hook and probe run, in order, with its result (for tests: the pod's own scripts worked). */
  readonly hooks: { pod: string; hook: 'preStop' | 'readiness'; ok: boolean }[] = [];
  private readonly pods = new Map<string, RunningPod>();
  private readonly path: string;
  private abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();
  private nextIp = 1;

  constructor(private readonly options: PodRunnerOptions) {
    this.path = `/api/v1/namespaces/${options.namespace}/pods`;
  }

  /** Starts following pods; resolves once the first list is handled. */
  async start(): Promise<void> {
    const first = await this.options.rest.list<RunnerPod>(this.selectorPath());
    for (const p of first.items) this.handle(p, false);
    this.loop = this.follow(first.resourceVersion);
  }

  /** Names of the pods whose processes run. */
  running(): string[] {
    return [...this.pods.keys()];
  }

  /** The process ids of a pod's containers (e.g. to crash one in a test). */
  pids(pod: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [c, p] of this.pods.get(pod)?.procs ?? []) if (p.child.pid !== undefined) out[c] = p.child.pid;
    return out;
  }

  /** Stops following and kills every process it started (SIGKILL: a node gone). */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop.catch(() => undefined);
    await Promise.all([...this.pods.values()].map((p) => this.kill(p)));
  }

  private selectorPath(): string {
    return `${this.path}?labelSelector=${encodeURIComponent(this.options.labelSelector)}`;
  }

  private async follow(resourceVersion: string): Promise<void> {
    let rv = resourceVersion;
    while (!this.abort.signal.aborted) {
      try {
        for await (const ev of this.options.rest.watch<RunnerPod>(this.selectorPath(), rv, this.abort.signal)) {
          if (ev.type === 'BOOKMARK') {
            rv = ev.object.metadata.resourceVersion ?? rv;
            continue;
          }
          if (ev.type === 'ERROR') throw new Error('watch error');
          rv = ev.object.metadata.resourceVersion ?? rv;
          this.handle(ev.object, ev.type === 'DELETED');
        }
      } catch {
        if (this.abort.signal.aborted) return;
        const listed = await this.options.rest
          .list<RunnerPod>(this.selectorPath(), this.abort.signal)
          .catch(() => undefined);
        if (!listed) continue;
        const live = new Set(listed.items.map((p) => p.metadata.name));
        for (const [name, p] of this.pods) if (!live.has(name)) void this.kill(p);
        for (const p of listed.items) this.handle(p, false);
        rv = listed.resourceVersion;
      }
    }
  }

  private handle(pod: RunnerPod, deleted: boolean): void {
    const name = pod.metadata.name;
    if (pod.metadata.annotations?.['kwok.x-k8s.io/status'] !== 'custom') return;
    const running = this.pods.get(name);
    if (deleted) {
      if (running) void this.kill(running);
      return;
    }
    if (running && running.uid !== pod.metadata.uid) void this.kill(running);
    if (!running && pod.spec.nodeName && !pod.metadata.deletionTimestamp)
      void this.run(pod).catch((err: unknown) =>
        this.options.onOutput?.(name, 'runner', `start failed: ${String(err)}`),
      );
    else if (running && pod.metadata.deletionTimestamp && !running.deleting) void this.terminate(running, pod);
  }

  private async run(pod: RunnerPod): Promise<void> {
    const name = pod.metadata.name;
    const dir = mkdtempSync(join(tmpdir(), `pod-${name}-`));
    const entry: RunningPod = {
      name,
      uid: pod.metadata.uid ?? '',
      dir,
      procs: new Map(),
      rewrite: (a) => a,
      sidecarContainer: 'sidecar',
      deleting: false,
      statusChain: Promise.resolve(),
      ready: false,
      watchAbort: new AbortController(),
    };
    this.pods.set(name, entry);
    const [api, whip, rtmp, grpc, http] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const declared: Record<string, string> = {};
    const envOf = async (c: Container): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const e of c.env ?? []) {
        if (e.value !== undefined) out[e.name] = e.value;
        else if (e.valueFrom?.secretKeyRef) out[e.name] = await this.secretValue(e.valueFrom.secretKeyRef);
        else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') out[e.name] = name;
      }
      Object.assign(declared, out);
      return out;
    };
    const local = {
      SMELTER_API_PORT: String(api),
      SMELTER_WHIP_WHEP_SERVER_PORT: String(whip),
      SMELTER_RTMP_SERVER_PORT: String(rtmp),
      SMELTER_EMULATOR_HOST: '127.0.0.1',
      SMELTER_FLEET_SMELTER_URL: `http://127.0.0.1:${api}`,
      SMELTER_FLEET_SDK_GRPC_PORT: String(grpc),
      SMELTER_FLEET_SDK_HTTP_PORT: String(http),
    };
    const smelter = pod.spec.containers.find((c) => c.name === 'smelter');
    const sidecar = pod.spec.containers.find((c) => c.name === 'sidecar');
    const mounts = new Map<string, string>();
    for (const c of pod.spec.containers)
      for (const m of c.volumeMounts ?? []) {
        mounts.set(m.mountPath, join(dir, m.name));
        mkdirSync(join(dir, m.name), { recursive: true });
      }
    if (sidecar) {
      const smelterEnv = await envOf(smelter ?? { name: 'smelter' });
      const sidecarEnv = await envOf(sidecar);
      this.spawn(entry, 'smelter', this.options.smelterCommand, { ...smelterEnv, ...local });
      this.spawn(entry, 'sidecar', this.options.sidecarCommand, { ...sidecarEnv, ...local });
    } else if (smelter) {
      const supervise = this.options.superviseCommand;
      if (!supervise) throw new Error('a Supervisor-mode pod needs the superviseCommand option');
      entry.sidecarContainer = 'smelter';
      this.spawn(entry, 'smelter', [...supervise, ...this.options.smelterCommand], {
        ...(await envOf(smelter)),
        ...local,
      });
    }
    const sdkPort = declared.SMELTER_FLEET_SDK_HTTP_PORT;
    entry.rewrite = (argv) =>
      argv.map((a) => {
        let out = sdkPort ? a.split(`127.0.0.1:${sdkPort}`).join(`127.0.0.1:${http}`) : a;
        for (const [path, localDir] of mounts) out = out.split(path).join(localDir);
        return out;
      });
    this.setStatus(entry, pod);
    void this.followReadiness(entry, pod, http);
  }

  private async secretValue(ref: { name: string; key: string }): Promise<string> {
    // The kubelet waits for a Secret not created yet (CreateContainerConfigError until then).
    const path = `/api/v1/namespaces/${this.options.namespace}/secrets?fieldSelector=${encodeURIComponent(
      `metadata.name=${ref.name}`,
    )}`;
    const [secret] = await this.options.rest.waitForList<KubeObject & { data?: Record<string, string> }>(
      path,
      (items) => items.length > 0,
      AbortSignal.any([this.abort.signal, AbortSignal.timeout(30_000)]),
    );
    const v = secret?.data?.[ref.key];
    if (v === undefined) throw new Error(`secret ${ref.name} has no key ${ref.key}`);
    return Buffer.from(v, 'base64').toString('utf8');
  }

  private spawn(entry: RunningPod, container: string, argv: string[], env: Record<string, string>): void {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [child.stdout, child.stderr])
      s?.setEncoding('utf8').on('data', (d: string) => {
        for (const line of d.split('\n')) if (line) this.options.onOutput?.(entry.name, container, line);
      });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    entry.procs.set(container, { child, exited });
    void exited.then(() => {
      if (this.pods.get(entry.name) === entry && !entry.deleting) this.setStatus(entry);
    });
  }

  /** Runs the pod's readiness probe (rewritten to the local port) on every change the sidecar reports. */
  private async followReadiness(entry: RunningPod, pod: RunnerPod, sdkHttpPort: number): Promise<void> {
    const probe = pod.spec.containers.find((c) => c.name === entry.sidecarContainer)?.readinessProbe?.exec?.command;
    const signal = entry.watchAbort.signal;
    while (!signal.aborted) {
      try {
        const res = await fetch(`http://127.0.0.1:${sdkHttpPort}/watch/server`, { signal });
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            const state = (JSON.parse(line) as { server?: { state?: string } }).server?.state ?? '';
            const ready = probe ? await this.exec(entry.rewrite(probe)) : SERVING.includes(state);
            if (probe) this.hooks.push({ pod: entry.name, hook: 'readiness', ok: ready });
            if (ready !== entry.ready && !entry.deleting) {
              entry.ready = ready;
              this.setStatus(entry);
            }
          }
        }
      } catch {
        // The sidecar is not listening yet, or went away: retry like a probe period.
      }
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private exec(argv: string[]): Promise<boolean> {
    const [cmd, ...args] = argv;
    return new Promise((resolve) => {
      const child = spawn(cmd === 'node' ? process.execPath : cmd!, args, { stdio: 'ignore' });
      child.once('error', () => resolve(false));
      child.once('exit', (code) => resolve(code === 0));
    });
  }

  /** The pod's status, as a kubelet reports it: Running, each container running or terminated, Ready. */
  private setStatus(entry: RunningPod, pod?: RunnerPod): void {
    const now = new Date().toISOString();
    const containers = [...entry.procs.entries()].map(([name, p]) => {
      const done = p.child.exitCode !== null || p.child.signalCode !== null;
      return {
        name,
        image: 'pod-runner',
        imageID: '',
        restartCount: 0,
        started: !done,
        ready: !done && entry.ready,
        state: done
          ? {
              terminated: {
                exitCode: p.child.exitCode ?? 128 + 9,
                reason: p.child.signalCode ? `Killed by ${p.child.signalCode}` : 'Error',
                startedAt: now,
                finishedAt: now,
              },
            }
          : { running: { startedAt: now } },
      };
    });
    const allDone = containers.every((c) => c.state.terminated);
    const ready = entry.ready && containers.every((c) => c.ready);
    const cond = (type: string, status: boolean) => ({
      type,
      status: status ? 'True' : 'False',
      lastTransitionTime: now,
    });
    const status = {
      phase: allDone ? 'Failed' : 'Running',
      ...(pod && { hostIP: '127.0.0.1', podIP: `10.244.0.${this.nextIp++ % 250}`, startTime: now }),
      conditions: [
        cond('PodScheduled', true),
        cond('Initialized', true),
        cond('ContainersReady', ready),
        cond('Ready', ready),
      ],
      containerStatuses: containers,
    };
    entry.statusChain = entry.statusChain
      .then(() =>
        this.options.rest.request('PATCH', `${this.path}/${entry.name}/status`, {
          body: { status },
          contentType: 'application/merge-patch+json',
        }),
      )
      .then(
        () => undefined,
        () => undefined,
      );
  }

  /** A deleted pod, as the kubelet stops it: preStop hook, SIGINT to Smelter, SIGTERM to the sidecar, final delete. */
  private async terminate(entry: RunningPod, pod: RunnerPod): Promise<void> {
    entry.deleting = true;
    const graceMs = (pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
    const deadline = new Promise<void>((r) => setTimeout(r, graceMs).unref());
    const smelter = entry.procs.get('smelter');
    const sidecar = entry.procs.get('sidecar');
    if (sidecar) {
      const hook = pod.spec.containers.find((c) => c.name === 'sidecar')?.lifecycle?.preStop?.exec?.command;
      if (hook)
        await Promise.race([
          this.exec(entry.rewrite(hook)).then((ok) => void this.hooks.push({ pod: entry.name, hook: 'preStop', ok })),
          deadline,
        ]);
      smelter?.child.kill('SIGINT');
      sidecar.child.kill('SIGTERM');
    } else {
      smelter?.child.kill('SIGTERM'); // supervise: waits for the composition, then SIGINTs Smelter
    }
    const all = Promise.all([...entry.procs.values()].map((p) => p.exited));
    await Promise.race([all, deadline]);
    await this.kill(entry);
    await this.options.rest
      .request('DELETE', `${this.path}/${entry.name}`, {
        body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: entry.uid } },
      })
      .catch(() => undefined);
  }

  private async kill(entry: RunningPod): Promise<void> {
    entry.watchAbort.abort();
    for (const p of entry.procs.values())
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all([...entry.procs.values()].map((p) => p.exited));
    await entry.statusChain;
    if (this.pods.get(entry.name) === entry) this.pods.delete(entry.name);
    rmSync(entry.dir, { recursive: true, force: true });
  }
}
