// pnpm bench:k8s: on a real control plane on this machine (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok playing the kubelets; scripts/k8s-bins.sh builds them):
//   1. 0 -> PODS Ready pods for a SmelterFleet applied with `smelter-fleet controller --kubernetes`;
//   2. kube-apiserver requests (apiserver_request_total) per allocation through our allocators on Redis, with the
//      controller stopped (the allocation path alone) and running (what its asynchronous pod labeler adds);
//   3. allocation the Agones way (optimistic updates of API objects) beside ours, same machine, same run.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connectAllocator } from '@smelter-fleet/allocator';
import { parseFleetFile } from '@smelter-fleet/core';
import { RedisStore } from '@smelter-fleet/redis-store';
// The bench package does not declare @smelter-fleet/testing (no dependency changes in this change): its build
// output is imported by path (tsconfig references ../testing, so it is built first).
import { startControlPlane, type ControlPlane } from '../../testing/dist/k8s/control-plane.js';
import type { KubeObject } from '../../testing/dist/k8s/kube-rest.js';
import { agonesStyleAllocations, seedServerObjects } from './k8s-agones.js';
import { startRedis } from './redis-server.js';
import { summarize, type Summary } from './stats.js';
import { seed } from './seed.js';

const PODS = Number(process.env.BENCH_PODS ?? 1000);
const NODES = Number(process.env.BENCH_NODES ?? 20);
/** Allocations counted in phase 2 (each way). */
const ALLOCATIONS = Number(process.env.BENCH_ALLOCATIONS ?? 200);
/** Idle window measuring the API server's background requests (leases, kwok heartbeats), ms. */
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 2);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
/** Server objects created for the Agones-style phase (it stops early if they run out). */
const AGONES_OBJECTS = Number(process.env.BENCH_AGONES_OBJECTS ?? 4000);
/** Ready servers seeded in Redis for phase 3's allocators (never recycled during the run). */
const REDIS_SERVERS = Number(process.env.BENCH_REDIS_SERVERS ?? 30_000);
/** The controller's --log-level; its output goes to `controller.log` in the control plane's log directory. */
const CONTROLLER_LOG_LEVEL = process.env.BENCH_CONTROLLER_LOG_LEVEL ?? 'error';
/** Keep the control plane's (and the controller's) logs after the run. Default off. */
const KEEP_LOGS = process.env.BENCH_KEEP_LOGS === '1';
/** CPU-profile the controller (`--cpu-prof`, written to the log directory; use with BENCH_KEEP_LOGS=1). */
const PROFILE = process.env.BENCH_PROFILE_CONTROLLER === '1';
/** Phases to run (comma-separated). Default all. */
const PHASES = new Set((process.env.BENCH_PHASES ?? '1,2,3').split(','));

const NAMESPACE = 'bench';
const FLEET = 'bench';
const STATE_LABEL = 'smelterfleet.dev/state';
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const cli = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const loadScript = fileURLToPath(new URL('./load.js', import.meta.url));

interface Pod extends KubeObject {
  metadata: KubeObject['metadata'] & { labels?: Record<string, string> };
  spec?: { nodeName?: string };
  status?: { conditions?: { type: string; status: string }[] };
}

const row = (name: string, s: Summary, extra = '') =>
  `${name.padEnd(44)} ${s.perSecond.toFixed(0).padStart(7)}/s  p50 ${s.p50Ms.toFixed(2).padStart(7)} ms  ` +
  `p99 ${s.p99Ms.toFixed(2).padStart(7)} ms  errors ${s.errors}${extra}`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const children = new Set<ChildProcess>();
const results: Record<string, unknown> = { pods: PODS, nodes: NODES };
const t0 = performance.now();
// The controller's client has no rate limit of its own; kube-controller-manager's and the scheduler's are raised
// from client-go's 20/30 (5/10 for the scheduler's events) so the scheduler binds a burst of pods quickly.
const cp = await startControlPlane({ clientQps: 500, clientBurst: 1000, kwokPodParallelism: 32 });
console.log(`control plane up in ${seconds(performance.now() - t0)} (logs: ${cp.logDir})`);
try {
  await cp.createNodes(NODES, { cpu: '64', memory: '512Gi', pods: '110' });
  await cp.rest.create('/api/v1/namespaces', { metadata: { name: NAMESPACE } });
  if (PHASES.has('1') || PHASES.has('2')) await fleetPhases(cp);
  if (PHASES.has('1')) await deploymentPhase(cp);
  if (PHASES.has('3')) await agonesPhase(cp);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await cp.stop({ keepLogs: KEEP_LOGS });
}
console.log(JSON.stringify(results));

/** Phases 1 and 2: a SmelterFleet of PODS servers run by `smelter-fleet controller --kubernetes`. */
async function fleetPhases(cp: ControlPlane): Promise<void> {
  for (const file of readdirSync(`${repoRoot}/deploy/crds`).filter((f) => f.endsWith('.yaml'))) {
    const text = readFileSync(`${repoRoot}/deploy/crds/${file}`, 'utf8');
    const name = /^ {2}name: (\S+)$/m.exec(text)?.[1];
    if (!name) throw new Error(`deploy/crds/${file}: no metadata.name`);
    await cp.rest.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`, text);
  }
  await cp.rest.waitForList<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
    (crds) =>
      crds.filter((c) => c.status?.conditions?.some((k) => k.type === 'Established' && k.status === 'True')).length >=
      2,
    AbortSignal.timeout(30_000),
  );

  const redis = await startRedis(false);
  const storeUrl = `${redis.url}?prefix=k8s`;
  const store = await RedisStore.connect({ url: storeUrl });
  let controller: Proc | undefined;
  let allocator: Proc | undefined;
  try {
    const alloc = await startAllocator(storeUrl);
    allocator = alloc;
    const startController = () =>
      startProcess(
        'controller',
        [
          'controller',
          '--kubernetes',
          '--store',
          storeUrl,
          '--link',
          alloc.link,
          '--kubeconfig',
          cp.kubeconfigPath,
          '--namespace',
          NAMESPACE,
          '--sidecar-image',
          'smelter-fleet:bench',
          '--log-level',
          CONTROLLER_LOG_LEVEL,
        ],
        /^leading: /,
      );
    controller = await startController();

    // 1. 0 -> PODS Ready pods.
    const podsPath = `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=${encodeURIComponent(`smelterfleet.dev/fleet=${FLEET}`)}`;
    const ready = (p: Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    const before = await requestCounts(cp);
    const applied = performance.now();
    await cp.rest.apply(`/apis/smelterfleet.dev/v1alpha1/namespaces/${NAMESPACE}/smelterfleets/${FLEET}`, {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleet',
      metadata: { name: FLEET, namespace: NAMESPACE },
      spec: {
        replicas: PODS,
        region: 'local',
        template: {
          spec: { image: 'smelter:bench', resources: { requests: { cpu: '100m', memory: '256Mi' } } },
        },
        // kwok pods run nothing: no sidecar reports them healthy (phase 2 does it through the store).
        health: { startupTimeout: '1h' },
      },
    });
    let firstReadyMs: number | undefined;
    // Progress every 5 s: pods created, scheduled, Ready (where the time goes).
    const timeline: { s: number; created: number; scheduled: number; ready: number }[] = [];
    let last = { created: 0, scheduled: 0, ready: 0 };
    const ticker = setInterval(
      () => timeline.push({ s: Math.round((performance.now() - applied) / 1000), ...last }),
      5000,
    );
    const pods = await cp.rest
      .waitForList<Pod>(
        podsPath,
        (items) => {
          const n = items.filter(ready).length;
          last = { created: items.length, scheduled: items.filter((p) => p.spec?.nodeName).length, ready: n };
          if (n > 0 && firstReadyMs === undefined) firstReadyMs = performance.now() - applied;
          return n >= PODS;
        },
        AbortSignal.timeout(600_000),
      )
      .finally(() => clearInterval(ticker));
    const podsMs = performance.now() - applied;
    const phase1Requests = diffCounts(before, await requestCounts(cp));
    console.log(
      `   progress (s: created/scheduled/Ready): ${timeline.map((t) => `${t.s}: ${t.created}/${t.scheduled}/${t.ready}`).join(', ')}`,
    );
    results.readyPods = { pods: pods.length, ms: podsMs, firstReadyMs, timeline, requests: phase1Requests };
    console.log(
      `\n1. SmelterFleet of ${PODS} on ${NODES} kwok nodes, smelter-fleet controller --kubernetes: ` +
        `${PODS} pods Ready in ${seconds(podsMs)} (first after ${seconds(firstReadyMs ?? NaN)}; target <= 60 s)`,
    );

    console.log(`   API requests meanwhile: ${phase1Requests.total} [${describe(phase1Requests)}]`);
    if (!PHASES.has('2')) return;
    // 2. API requests per allocation. The servers turn Ready through the store (as their sidecars' link reports
    // would: kwok pods run no sidecar), then the labeler labels the pods; wait for that to settle.
    const servers = await store.listServers();
    await Promise.all(
      servers
        .filter((s) => s.fleet === FLEET && s.state === 'Starting')
        .map((s) => store.updateServer(s.name, { event: 'Healthy' })),
    );
    await untilLabelled(cp, podsPath, (labels) => labels.Ready! >= PODS);
    const allocateMany = async (prefix: string) => {
      const client = connectAllocator(alloc.address);
      const latencies: number[] = [];
      let errors = 0;
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < ALLOCATIONS) {
            const i = next++;
            const t = performance.now();
            try {
              await client.allocation.allocate({ fleet: FLEET, compositionId: `${prefix}-${i}` });
              latencies.push(performance.now() - t);
            } catch {
              errors++;
            }
          }
        }),
      );
      client.close();
      return summarize(latencies, (performance.now() - started) / 1000, errors);
    };

    const idle = await requestsDuring(cp, () => new Promise((r) => setTimeout(r, IDLE_MS)));
    // a. Controller running: allocations, then until the labeler has labelled every allocated pod.
    let allocatedBefore = 0;
    const withLabeler = await requestsDuring(cp, async () => {
      const s = await allocateMany('with-controller');
      await untilLabelled(cp, podsPath, (labels) => (labels.Allocated ?? 0) >= ALLOCATIONS);
      allocatedBefore = ALLOCATIONS;
      return s;
    });
    // b. Controller stopped (it leaves its pods running): the allocation path alone.
    await stopProcess(controller);
    const idleStopped = await requestsDuring(cp, () => new Promise((r) => setTimeout(r, IDLE_MS)));
    const alone = await requestsDuring(cp, () => allocateMany('controller-stopped'));
    // c. Controller started again: the labeler catches up (with the new leader's start-up lists in the count).
    const catchUp = await requestsDuring(cp, async () => {
      controller = await startController();
      await untilLabelled(cp, podsPath, (labels) => (labels.Allocated ?? 0) >= allocatedBefore + ALLOCATIONS);
    });
    await stopProcess(controller);

    const perSecond = (r: Requests) => r.total / (r.ms / 1000);
    const excess = (r: Requests, base: Requests) => r.total - perSecond(base) * (r.ms / 1000);
    results.apiRequests = { idle, withLabeler, idleStopped, alone, catchUp };
    console.log(`\n2. kube-apiserver requests (apiserver_request_total) around ${ALLOCATIONS} allocations each:`);
    console.log(
      `   background, controller running: ${perSecond(idle).toFixed(1)}/s (${describe(idle)}); ` +
        `controller stopped: ${perSecond(idleStopped).toFixed(1)}/s (${describe(idleStopped)})`,
    );
    console.log(
      `   allocation path alone (controller stopped): ${alone.total} requests in ${seconds(alone.ms)} ` +
        `(${(perSecond(idleStopped) * (alone.ms / 1000)).toFixed(1)} expected from background) = ` +
        `${(Math.max(0, excess(alone, idleStopped)) / ALLOCATIONS).toFixed(3)} per allocation  [${describe(alone)}]` +
        `  (${row('', alone.result!).trim()})`,
    );
    console.log(
      `   controller running, until labelled: ${withLabeler.total} requests in ${seconds(withLabeler.ms)} = ` +
        `${(excess(withLabeler, idle) / ALLOCATIONS).toFixed(2)} per allocation beyond background  [${describe(withLabeler)}]`,
    );
    console.log(
      `   labeler catching up after a restart: ${catchUp.total} requests in ${seconds(catchUp.ms)}  [${describe(catchUp)}]`,
    );
  } finally {
    // Before Redis: without it they would only log reconnection errors.
    if (controller) await stopProcess(controller);
    if (allocator) await stopProcess(allocator);
    await store.close();
    await redis.stop();
  }
}

/**
 * Reference for phase 1: the same number of pods from a plain Deployment (kube-controller-manager's ReplicaSet
 * controller creates them), i.e. what this control plane does on this machine without our controller.
 */
async function deploymentPhase(cp: ControlPlane): Promise<void> {
  const ns = 'bench-deployment';
  await cp.rest.create('/api/v1/namespaces', { metadata: { name: ns } });
  const started = performance.now();
  await cp.rest.create(`/apis/apps/v1/namespaces/${ns}/deployments`, {
    metadata: { name: 'reference' },
    spec: {
      replicas: PODS,
      selector: { matchLabels: { app: 'reference' } },
      template: {
        metadata: { labels: { app: 'reference' } },
        spec: {
          containers: [
            { name: 'smelter', image: 'smelter:bench', resources: { requests: { cpu: '100m', memory: '256Mi' } } },
          ],
        },
      },
    },
  });
  const ready = (p: Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
  await cp.rest.waitForList<Pod>(
    `/api/v1/namespaces/${ns}/pods?labelSelector=app%3Dreference`,
    (items) => items.filter(ready).length >= PODS,
    AbortSignal.timeout(600_000),
  );
  const ms = performance.now() - started;
  results.deploymentPods = { ms };
  console.log(
    `   reference: a Deployment of ${PODS} (kube-controller-manager creates the pods): Ready in ${seconds(ms)}`,
  );
  await cp.rest.delete(`/api/v1/namespaces/${ns}`);
}

/** Phase 3: Agones-style allocation through the API server, then ours, same concurrency and duration. */
async function agonesPhase(cp: ControlPlane): Promise<void> {
  await cp.rest.create('/api/v1/namespaces', { metadata: { name: 'agones-style' } });
  const seedStart = performance.now();
  await seedServerObjects(cp.rest, 'agones-style', AGONES_OBJECTS);
  console.log(`\nagones-style: ${AGONES_OBJECTS} server objects created in ${seconds(performance.now() - seedStart)}`);
  const agones = await agonesStyleAllocations(cp.rest, 'agones-style', {
    replicas: REPLICAS,
    concurrency: CONCURRENCY,
    durationMs: DURATION_MS,
  });
  const ours = await ourAllocations();
  results.agonesStyle = agones;
  results.ours = ours;
  console.log(
    `\n3. Allocation, ${CONCURRENCY} concurrent clients, ${REPLICAS} allocator replicas, closed loop ${DURATION_MS} ms`,
  );
  console.log(
    row('Agones-style (API objects, 409 retries)', agones, `  conflicts ${agones.conflicts}  ran dry ${agones.empty}`),
  );
  console.log(row('ours (smelter-fleet allocator, Redis)', ours));
  console.log(
    `ours / Agones-style: throughput ${(ours.perSecond / agones.perSecond).toFixed(1)}x, ` +
      `p99 ${(agones.p99Ms / ours.p99Ms).toFixed(1)}x lower`,
  );
}

/** Our allocators on Redis under the same closed loop (load generator in its own process, as bench:allocate). */
async function ourAllocations(): Promise<Summary> {
  const redis = await startRedis(false);
  const url = `${redis.url}?prefix=bench`;
  const store = await RedisStore.connect({ url });
  const replicas: Proc[] = [];
  try {
    const [fleet] = parseFleetFile(
      'apiVersion: smelterfleet.dev/v1alpha1\nkind: SmelterFleet\nmetadata: {name: bench}\nspec: {replicas: 1}',
      'bench',
    );
    await store.putFleet(fleet!);
    await seed(store, REDIS_SERVERS);
    for (let i = 0; i < REPLICAS; i++) replicas.push(await startAllocator(url));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        loadScript,
        replicas.map((r) => r.address).join(','),
        String(DURATION_MS),
        String(CONCURRENCY),
        '200',
        'allocate-only',
      ],
      { maxBuffer: 1 << 20 },
    );
    return (JSON.parse(stdout) as { allocations: Summary }).allocations;
  } finally {
    for (const r of replicas) await stopProcess(r);
    await store.close();
    await redis.stop();
  }
}

interface Proc {
  name: string;
  child: ChildProcess;
  lines: string[];
  address: string;
  link: string;
}

/** Runs `smelter-fleet <args>` until a line matches `ready`. */
async function startProcess(name: string, args: string[], ready: RegExp): Promise<Proc> {
  const profile = PROFILE && name === 'controller' ? ['--cpu-prof', `--cpu-prof-dir=${cp.logDir}`] : [];
  const child = spawn(process.execPath, [...profile, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const lines: string[] = [];
  const log = createWriteStream(join(cp.logDir, `${name}.log`), { flags: 'a' });
  child.once('exit', () => log.end());
  // Read to the end (a full pipe would block the child), keeping the first lines for errors.
  return new Promise<Proc>((resolve, reject) => {
    const keep = (line: string) => {
      if (lines.length < 200) lines.push(line);
      log.write(`${new Date().toISOString()} ${line}\n`);
      if (ready.test(line)) resolve({ name, child, lines, address: '', link: '' });
    };
    createInterface({ input: child.stderr! }).on('line', keep);
    createInterface({ input: child.stdout! }).on('line', keep);
    child.once('exit', () => reject(new Error(`${name} exited before ${ready}:\n${lines.join('\n')}`)));
  });
}

async function startAllocator(storeUrl: string): Promise<Proc> {
  const p = await startProcess(
    'allocator',
    ['allocator', '--store', storeUrl, '--allocator-port', '0', '--insecure', '--log-level', 'error'],
    /sidecar link on /,
  );
  p.address = /listening on (\S+)/.exec(p.lines.join('\n'))?.[1] ?? '';
  p.link = /sidecar link on (\S+)/.exec(p.lines.join('\n'))?.[1] ?? '';
  return p;
}

/** SIGTERM, and SIGKILL if the process is still there after 10 s (it says so). */
async function stopProcess(p: Proc): Promise<void> {
  children.delete(p.child);
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((resolve) => p.child.once('exit', resolve));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    console.warn(`   (${p.name} still running 10 s after SIGTERM: killed)`);
    p.child.kill('SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(timer);
}

/** Resolves once the pods' state labels, counted per state, satisfy `done`. */
async function untilLabelled(
  cp: ControlPlane,
  podsPath: string,
  done: (counts: Record<string, number>) => boolean,
): Promise<void> {
  await cp.rest.waitForList<Pod>(
    podsPath,
    (pods) => {
      const counts: Record<string, number> = { Ready: 0 };
      for (const p of pods) {
        const s = p.metadata.labels?.[STATE_LABEL];
        if (s) counts[s] = (counts[s] ?? 0) + 1;
      }
      return done(counts);
    },
    AbortSignal.timeout(300_000),
  );
}

interface Requests {
  total: number;
  ms: number;
  /** `VERB resource[/subresource]` -> requests. */
  by: Record<string, number>;
  result?: Summary;
}

/** apiserver_request_total, summed per verb and resource. */
async function requestCounts(cp: ControlPlane): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const line of (await cp.metrics()).split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    // Non-resource requests (/metrics, /readyz) carry their path in `subresource`.
    const key = labels.resource
      ? `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`
      : `${labels.verb} ${labels.subresource}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return counts;
}

/** Requests the API server served while `run` ran (the metrics reads themselves left out). */
async function requestsDuring(cp: ControlPlane, run: () => Promise<Summary | void>): Promise<Requests> {
  const before = await requestCounts(cp);
  const started = performance.now();
  const result = await run();
  const ms = performance.now() - started;
  return { ...diffCounts(before, await requestCounts(cp)), ms, ...(result ? { result } : {}) };
}

function diffCounts(before: Map<string, number>, after: Map<string, number>): Omit<Requests, 'ms'> {
  const by: Record<string, number> = {};
  let total = 0;
  for (const [key, n] of after) {
    let d = n - (before.get(key) ?? 0);
    if (key === 'GET /metrics') d -= 1; // the read of `before` is counted in `after`
    if (d > 0) {
      by[key] = d;
      total += d;
    }
  }
  return { total, by };
}

function describe(r: Omit<Requests, 'ms'>): string {
  return (
    Object.entries(r.by)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || 'none'
  );
}
