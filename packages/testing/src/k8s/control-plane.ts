import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCert, makeCa, type CertPair } from '../certs.js';
import { freePort } from '../redis-server.js';
import { ensureK8sBins } from './bins.js';
import { KubeRest, type KubeObject } from './kube-rest.js';
import { KWOK_STAGES_YAML } from './kwok-stages.js';

export type ControlPlaneComponent = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kwok';

export interface ControlPlaneOptions {
  /** Directory with the binaries. Default: what scripts/k8s-bins.sh prints (builds them when missing). */
  binDir?: string;
  /** Start kube-controller-manager (Deployments, ReplicaSets, garbage collection, namespaces). Default true. */
  controllerManager?: boolean;
  /** Start kube-scheduler. Default true. */
  scheduler?: boolean;
  /** Start kwok (fake kubelets for nodes annotated `kwok.x-k8s.io/node: fake`). Default true. */
  kwok?: boolean;
  /** QPS / burst of kube-controller-manager's and kube-scheduler's clients. Default 200 / 400. */
  clientQps?: number;
  clientBurst?: number;
  /** Pods kwok moves through a stage in parallel. Default 16. */
  kwokPodParallelism?: number;
  /** Extra command-line flags per component (appended, so they override). Default none. */
  extraArgs?: Partial<Record<ControlPlaneComponent, string[]>>;
  /** How long everything may take to become ready, in ms. Default 120000. */
  startTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface FakeNodesOptions {
  /** Node name prefix; nodes are `<prefix>-<i>`. Default `kwok-node`. */
  namePrefix?: string;
  /** First index. Default 0. */
  startIndex?: number;
  /** Allocatable (= capacity). Defaults: cpu 32, memory 256Gi, pods 110. */
  cpu?: string;
  memory?: string;
  pods?: string;
  /** Extra allocatable resources, e.g. `{ 'nvidia.com/gpu': '4' }`. Default none. */
  extraResources?: Record<string, string>;
  labels?: Record<string, string>;
  /** The node's ExternalIP. Default `127.1.<i / 250>.<i % 250 + 1>` (loopback: a test can listen on it). */
  externalIp?: (index: number) => string;
  /** The node's InternalIP. Default `10.1.<i / 250>.<i % 250 + 1>`. */
  internalIp?: (index: number) => string;
  /** Wait until kwok has made every node Ready. Default true. */
  waitReady?: boolean;
  signal?: AbortSignal;
}

/** A running test control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok. */
export interface ControlPlane {
  /** `https://127.0.0.1:<port>` */
  server: string;
  /** Kubeconfig of the admin user (client certificate, group `system:masters`). */
  kubeconfigPath: string;
  binDir: string;
  /** Temporary directory of this control plane (data, certificates, kubeconfigs, logs). */
  dir: string;
  /** One log file per component: `<logDir>/<component>.log`. */
  logDir: string;
  ca: CertPair;
  /** Admin client certificate. */
  admin: CertPair;
  /** REST client as admin. */
  rest: KubeRest;
  /** A kubeconfig file for a client certificate with this user name and groups (for RBAC checks). */
  userKubeconfig(user: string, groups?: string[]): { path: string; cert: CertPair };
  /** Creates fake nodes kwok plays kubelet for; resolves with their names once Ready (and schedulable). */
  createNodes(count: number, options?: FakeNodesOptions): Promise<string[]>;
  /** The components' process ids (those still running). */
  pids(): Partial<Record<ControlPlaneComponent, number>>;
  /** kube-apiserver's Prometheus metrics (text). */
  metrics(signal?: AbortSignal): Promise<string>;
  /** Stops every process and removes the directory (the logs are kept, and their path printed, if `keepLogs` or a component died). */
  stop(options?: { keepLogs?: boolean }): Promise<void>;
}

const SERVICE_CIDR = '10.96.0.0/16';
const POD_CIDR = '10.128.0.0/12';

/** Kills children and removes directories of a test process that died without stop() (reads commands on stdin). */
const REAPER = `
const fs = require('fs');
const pids = new Set(), dirs = new Set();
let buf = '', done = false;
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    const sp = line.indexOf(' '), cmd = sp < 0 ? line : line.slice(0, sp), arg = sp < 0 ? '' : line.slice(sp + 1);
    if (cmd === 'pid') pids.add(Number(arg));
    else if (cmd === 'unpid') pids.delete(Number(arg));
    else if (cmd === 'dir') dirs.add(arg);
    else if (cmd === 'undir') dirs.delete(arg);
    else if (cmd === 'done') { done = true; process.exit(0); }
  }
});
process.stdin.on('end', () => {
  if (done) return;
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
  setTimeout(() => {
    for (const d of dirs) { try { fs.rmSync(d, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  }, 500);
});
`;

class Reaper {
  private readonly child: ChildProcess;

  constructor() {
    this.child = spawn(process.execPath, ['-e', REAPER], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  send(line: string): void {
    if (this.child.stdin?.writable) this.child.stdin.write(`${line}\n`);
  }

  close(): void {
    this.send('done');
    this.child.stdin?.end();
  }
}

interface Proc {
  name: ControlPlaneComponent;
  child: ChildProcess;
  exited: Promise<void>;
  /** Set when the process ended on its own (not asked to stop). */
  diedUnexpectedly: boolean;
  stopping: boolean;
}

function kubeconfig(server: string, ca: CertPair, user: string, cert: CertPair): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'smelter-fleet-test', cluster: { server, 'certificate-authority-data': b64(ca.cert) } }],
      users: [{ name: user, user: { 'client-certificate-data': b64(cert.cert), 'client-key-data': b64(cert.key) } }],
      contexts: [{ name: 'smelter-fleet-test', context: { cluster: 'smelter-fleet-test', user } }],
      'current-context': 'smelter-fleet-test',
    },
    null,
    2,
  );
}

function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Repeats `check` (every `intervalMs`) until it answers true: readiness endpoints have no event to await. */
async function pollUntil(
  what: string,
  check: () => Promise<boolean>,
  deadline: number,
  signal: AbortSignal | undefined,
  failed: () => string | undefined,
  intervalMs = 100,
): Promise<void> {
  for (;;) {
    signal?.throwIfAborted();
    const dead = failed();
    if (dead) throw new Error(`${what}: ${dead}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready in time`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpGet(url, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.setTimeout(2000, () => req.destroy());
  });
}

/** GET on a component's own self-signed HTTPS port (healthz is allowed without authentication). */
function httpsOkInsecure(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.setTimeout(2000, () => req.destroy());
    req.end();
  });
}

/**
 * Starts a real Kubernetes control plane on loopback, envtest-style: etcd, kube-apiserver (client-certificate
 * authentication, RBAC), kube-controller-manager, kube-scheduler, and kwok for fake nodes. Resolves when every
 * component answers its health endpoint. Everything is stopped and removed by stop(), and also if this process dies.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = options.binDir ?? ensureK8sBins();
  const bin = (name: string) => join(binDir, name);
  const signal = options.signal;
  const deadline = Date.now() + (options.startTimeoutMs ?? 120_000);
  const qps = String(options.clientQps ?? 200);
  const burst = String(options.clientBurst ?? 400);

  const dir = mkdtempSync(join(tmpdir(), 'sf-k8s-'));
  const logDir = join(dir, 'logs');
  const pki = join(dir, 'pki');
  mkdirSync(logDir);
  mkdirSync(pki);
  const reaper = new Reaper();
  reaper.send(`dir ${dir}`);

  const procs: Proc[] = [];
  const killAllSync = () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  };
  process.once('exit', killAllSync);

  const start = (name: ControlPlaneComponent, args: string[]): Proc => {
    const logPath = join(logDir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    const child = spawn(bin(name), [...args, ...(options.extraArgs?.[name] ?? [])], {
      stdio: ['ignore', fd, fd],
      cwd: dir,
    });
    closeSync(fd);
    const proc: Proc = {
      name,
      child,
      diedUnexpectedly: false,
      stopping: false,
      exited: new Promise<void>((resolve) => {
        child.once('exit', () => {
          if (!proc.stopping) proc.diedUnexpectedly = true;
          if (child.pid !== undefined) reaper.send(`unpid ${child.pid}`);
          resolve();
        });
        child.once('error', (err) => {
          proc.diedUnexpectedly = true;
          writeFileSync(logPath, `spawn failed: ${err.message}\n`, { flag: 'a' });
          resolve();
        });
      }),
    };
    if (child.pid !== undefined) reaper.send(`pid ${child.pid}`);
    procs.push(proc);
    return proc;
  };
  const deathOf = (proc: Proc) => () =>
    proc.diedUnexpectedly
      ? `${proc.name} exited (${proc.child.exitCode ?? proc.child.signalCode}); log ${join(logDir, `${proc.name}.log`)}:\n${tail(join(logDir, `${proc.name}.log`))}`
      : undefined;

  const stopProc = async (proc: Proc) => {
    proc.stopping = true;
    if (proc.child.exitCode !== null || proc.child.signalCode !== null || proc.child.pid === undefined) return;
    proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
    await proc.exited;
    clearTimeout(timer);
  };
  const stopAll = async () => {
    for (const p of [...procs].reverse()) await stopProc(p);
    process.removeListener('exit', killAllSync);
  };

  let rest: KubeRest | undefined;
  try {
    // Certificates: one CA signs the API server's serving certificate and every client's.
    const ca = makeCa('smelter-fleet test cluster CA');
    const serving = issueCert(ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ips: ['127.0.0.1', '10.96.0.1'],
      usage: 'server',
    });
    const admin = issueCert(ca, { commonName: 'admin', organizations: ['system:masters'], usage: 'client' });
    // Its bootstrap role assumes --use-service-account-credentials (a token per controller); one identity is simpler.
    const kcm = issueCert(ca, {
      commonName: 'system:kube-controller-manager',
      organizations: ['system:masters'],
      usage: 'client',
    });
    const sched = issueCert(ca, { commonName: 'system:kube-scheduler', usage: 'client' });
    // kwok plays every kubelet: simplest to let it do anything.
    const kwokCert = issueCert(ca, { commonName: 'kwok', organizations: ['system:masters'], usage: 'client' });
    const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const files = {
      ca: join(pki, 'ca.crt'),
      caKey: join(pki, 'ca.key'),
      servingCert: join(pki, 'apiserver.crt'),
      servingKey: join(pki, 'apiserver.key'),
      saKey: join(pki, 'sa.key'),
      saPub: join(pki, 'sa.pub'),
    };
    writeFileSync(files.ca, ca.cert);
    writeFileSync(files.caKey, ca.key, { mode: 0o600 });
    writeFileSync(files.servingCert, serving.cert);
    writeFileSync(files.servingKey, serving.key, { mode: 0o600 });
    writeFileSync(files.saKey, sa.privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    writeFileSync(files.saPub, sa.publicKey.export({ type: 'spki', format: 'pem' }));

    const [etcdPort, etcdPeerPort, apiPort, kcmPort, schedPort, kwokPort] = await Promise.all(
      Array.from({ length: 6 }, () => freePort()),
    );
    const server = `https://127.0.0.1:${apiPort}`;

    const etcd = start('etcd', [
      '--name=default',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync=true', // a test cluster: speed over durability
      '--log-level=warn',
    ]);
    await pollUntil('etcd', () => httpOk(`http://127.0.0.1:${etcdPort}/health`), deadline, signal, deathOf(etcd));

    const apiserver = start('kube-apiserver', [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${files.servingCert}`,
      `--tls-private-key-file=${files.servingKey}`,
      `--client-ca-file=${files.ca}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${files.saPub}`,
      `--service-account-signing-key-file=${files.saKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--allow-privileged=true',
      // As envtest: no token volumes to wait for (kwok pods have no kubelet to mount them).
      '--disable-admission-plugins=ServiceAccount',
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      '--max-requests-inflight=800',
      '--max-mutating-requests-inflight=400',
      '--v=1',
    ]);
    rest = new KubeRest({ server, ca: ca.cert, cert: admin.cert, key: admin.key });
    const adminRest = rest;
    await pollUntil(
      'kube-apiserver /readyz',
      async () => (await adminRest.request<string>('GET', '/readyz', { text: true, signal })) === 'ok',
      deadline,
      signal,
      deathOf(apiserver),
    );

    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfig(server, ca, 'admin', admin), { mode: 0o600 });
    const kcmKubeconfig = join(dir, 'kube-controller-manager.kubeconfig');
    writeFileSync(kcmKubeconfig, kubeconfig(server, ca, 'system:kube-controller-manager', kcm), { mode: 0o600 });
    const schedKubeconfig = join(dir, 'kube-scheduler.kubeconfig');
    writeFileSync(schedKubeconfig, kubeconfig(server, ca, 'system:kube-scheduler', sched), { mode: 0o600 });
    const kwokKubeconfig = join(dir, 'kwok.kubeconfig');
    writeFileSync(kwokKubeconfig, kubeconfig(server, ca, 'kwok', kwokCert), { mode: 0o600 });

    const waits: Promise<void>[] = [];
    if (options.controllerManager ?? true) {
      const p = start('kube-controller-manager', [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        `--cert-dir=${join(dir, 'kcm-certs')}`,
        '--leader-elect=false',
        `--service-account-private-key-file=${files.saKey}`,
        `--root-ca-file=${files.ca}`,
        `--cluster-signing-cert-file=${files.ca}`,
        `--cluster-signing-key-file=${files.caKey}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // Not needed without kubelets / cloud, and noisy.
        '--controllers=*,-node-ipam-controller,-persistentvolume-binder-controller,-persistentvolume-expander-controller,-persistentvolume-attach-detach-controller,-ephemeral-volume-controller',
        `--kube-api-qps=${qps}`,
        `--kube-api-burst=${burst}`,
        '--concurrent-replicaset-syncs=10',
        '--v=1',
      ]);
      waits.push(
        pollUntil(
          'kube-controller-manager /healthz',
          () => httpsOkInsecure(`https://127.0.0.1:${kcmPort}/healthz`),
          deadline,
          signal,
          deathOf(p),
        ),
      );
    }
    if (options.scheduler ?? true) {
      const config = join(dir, 'kube-scheduler.yaml');
      writeFileSync(
        config,
        [
          'apiVersion: kubescheduler.config.k8s.io/v1',
          'kind: KubeSchedulerConfiguration',
          'leaderElection: { leaderElect: false }',
          `clientConnection: { kubeconfig: ${JSON.stringify(schedKubeconfig)}, qps: ${qps}, burst: ${burst} }`,
          '',
        ].join('\n'),
      );
      const p = start('kube-scheduler', [
        `--config=${config}`,
        `--authentication-kubeconfig=${schedKubeconfig}`,
        `--authorization-kubeconfig=${schedKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        `--cert-dir=${join(dir, 'scheduler-certs')}`,
        '--v=1',
      ]);
      waits.push(
        pollUntil(
          'kube-scheduler /healthz',
          () => httpsOkInsecure(`https://127.0.0.1:${schedPort}/healthz`),
          deadline,
          signal,
          deathOf(p),
        ),
      );
    }
    if (options.kwok ?? true) {
      const config = join(dir, 'kwok.yaml');
      writeFileSync(
        config,
        [
          'apiVersion: config.kwok.x-k8s.io/v1alpha1',
          'kind: KwokConfiguration',
          'options:',
          `  cidr: ${POD_CIDR}`,
          `  podPlayStageParallelism: ${options.kwokPodParallelism ?? 16}`,
          '  nodePlayStageParallelism: 4',
          '  nodeLeaseDurationSeconds: 40',
          '  nodeLeaseParallelism: 4',
          '  podsOnNodeSyncParallelism: 2',
          '---',
          KWOK_STAGES_YAML,
        ].join('\n'),
      );
      const p = start('kwok', [
        `--config=${config}`,
        `--kubeconfig=${kwokKubeconfig}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        `--server-address=127.0.0.1:${kwokPort}`, // only for /healthz
        '--v=INFO',
      ]);
      waits.push(
        pollUntil('kwok /healthz', () => httpOk(`http://127.0.0.1:${kwokPort}/healthz`), deadline, signal, deathOf(p)),
      );
    }
    await Promise.all(waits);

    let stopped = false;
    const cp: ControlPlane = {
      server,
      kubeconfigPath,
      binDir,
      dir,
      logDir,
      ca,
      admin,
      rest,
      userKubeconfig(user, groups = []) {
        const cert = issueCert(ca, { commonName: user, organizations: groups, usage: 'client' });
        const path = join(dir, `user-${user.replace(/[^a-zA-Z0-9.-]/g, '_')}.kubeconfig`);
        writeFileSync(path, kubeconfig(server, ca, user, cert), { mode: 0o600 });
        return { path, cert };
      },
      createNodes: (count, nodeOptions = {}) =>
        createNodes(adminRest, count, nodeOptions, options.controllerManager ?? true),
      pids: () =>
        Object.fromEntries(
          procs
            .filter((p) => p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined)
            .map((p) => [p.name, p.child.pid]),
        ),
      metrics: (s) => adminRest.request<string>('GET', '/metrics', { text: true, signal: s }),
      async stop(stopOptions = {}) {
        if (stopped) return;
        stopped = true;
        adminRest.close();
        const died = procs.filter((p) => p.diedUnexpectedly);
        await stopAll();
        if (stopOptions.keepLogs || died.length) {
          rmSync(join(dir, 'etcd'), { recursive: true, force: true });
          reaper.send(`undir ${dir}`);
          console.warn(
            `control plane logs kept in ${logDir}` +
              (died.length ? ` (${died.map((p) => p.name).join(', ')} died during the run)` : ''),
          );
        } else {
          rmSync(dir, { recursive: true, force: true });
        }
        reaper.close();
      },
    };
    return cp;
  } catch (err) {
    rest?.close();
    await stopAll();
    rmSync(join(dir, 'etcd'), { recursive: true, force: true });
    reaper.send(`undir ${dir}`);
    reaper.close();
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`test control plane did not start: ${message}\n(logs in ${logDir})`, { cause: err });
  }
}

/** Index-based addresses: up to 250 x 256 nodes. */
function indexIp(prefix: string, i: number): string {
  return `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

async function createNodes(
  rest: KubeRest,
  count: number,
  options: FakeNodesOptions,
  untainted: boolean,
): Promise<string[]> {
  const prefix = options.namePrefix ?? 'kwok-node';
  const first = options.startIndex ?? 0;
  const names: string[] = [];
  const resources = {
    cpu: options.cpu ?? '32',
    memory: options.memory ?? '256Gi',
    pods: options.pods ?? '110',
    ...options.extraResources,
  };
  const creates: Promise<unknown>[] = [];
  for (let i = first; i < first + count; i++) {
    const name = `${prefix}-${i}`;
    names.push(name);
    creates.push(
      rest.create(
        '/api/v1/nodes',
        {
          apiVersion: 'v1',
          kind: 'Node',
          metadata: {
            name,
            annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
            labels: {
              type: 'kwok',
              'kubernetes.io/hostname': name,
              'kubernetes.io/os': 'linux',
              'kubernetes.io/arch': 'amd64',
              ...options.labels,
            },
          },
          // Nodes accept status on create: kwok keeps these addresses and resources.
          status: {
            addresses: [
              { type: 'InternalIP', address: options.internalIp?.(i) ?? indexIp('10.1', i) },
              { type: 'ExternalIP', address: options.externalIp?.(i) ?? indexIp('127.1', i) },
              { type: 'Hostname', address: name },
            ],
            allocatable: resources,
            capacity: resources,
          },
        },
        options.signal,
      ),
    );
  }
  await Promise.all(creates);
  if (options.waitReady ?? true) {
    const wanted = new Set(names);
    // Ready, and (with kube-controller-manager) rid of the not-ready taint admission put on it: schedulable.
    await rest.waitForList<
      KubeObject & {
        spec?: { taints?: { key: string }[] };
        status?: { conditions?: { type: string; status: string }[] };
      }
    >(
      '/api/v1/nodes?labelSelector=type%3Dkwok',
      (nodes) =>
        nodes.filter(
          (n) =>
            wanted.has(n.metadata.name) &&
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
            !(untainted && n.spec?.taints?.some((t) => t.key === 'node.kubernetes.io/not-ready')),
        ).length === wanted.size,
      options.signal ?? AbortSignal.timeout(60_000),
    );
  }
  return names;
}
