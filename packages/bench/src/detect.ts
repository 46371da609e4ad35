// pnpm bench:detect — how fast the sidecar reports a crashed or hung Smelter, and what it costs at idle.
// Real processes: emulators, sidecars (`supervise` and the stand-alone `sidecar` as in a pod), one allocator.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startAllocatorServer } from '@smelter-fleet/allocator';
import { linkToken, type FleetSpec, type ServerRecord, type Store } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { percentile } from './stats.js';

const TRIALS = Number(process.argv[2] ?? 20);
const cliBin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const SECRET = 'bench';

const fleet: FleetSpec = {
  name: 'f',
  replicas: 0,
  region: 'local',
  scheduling: 'Packed',
  template: { labels: {}, command: [], env: {} },
  drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 3_600_000 },
  // The fleet file's defaults.
  health: {
    startupTimeoutMs: 60_000,
    periodMs: 500,
    failureThreshold: 3,
    readiness: 'Smelter',
    leaseTimeoutMs: 3000,
    sdkHealthTimeoutMs: 0,
  },
};

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Resolves with the time (ms, performance clock) at which `name` first satisfies `pred`. */
async function when(store: Store, name: string, pred: (s: ServerRecord) => boolean): Promise<number> {
  const ac = new AbortController();
  const feed = store.watch(ac.signal);
  try {
    const now = await store.getServer(name);
    if (now && pred(now)) return performance.now();
    for await (const e of feed) if (e.type === 'server' && e.server.name === name && pred(e.server)) return performance.now();
    throw new Error('store closed');
  } finally {
    ac.abort();
  }
}

const exited = (p: ChildProcess) =>
  new Promise<void>((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve())));

interface Server {
  name: string;
  api: number;
  procs: ChildProcess[];
  sidecar: ChildProcess;
}

/** One server: `supervise` (Smelter as the sidecar's child) or `sidecar` (two sibling processes, as in a pod). */
async function launch(store: Store, link: string, name: string, mode: 'supervise' | 'sidecar'): Promise<Server> {
  const [api, whip, rtmp] = [await freePort(), await freePort(), await freePort()];
  await store.addServer({
    name,
    fleet: 'f',
    region: 'local',
    address: '127.0.0.1',
    ports: { api, whip_whep: whip, rtmp },
    labels: {},
    node: 'n',
  });
  const env = {
    ...process.env,
    SMELTER_API_PORT: String(api),
    SMELTER_WHIP_WHEP_SERVER_PORT: String(whip),
    SMELTER_RTMP_SERVER_PORT: String(rtmp),
    SMELTER_EMULATOR_HOST: '127.0.0.1',
    SMELTER_FLEET_SERVER_NAME: name,
    SMELTER_FLEET_LINK: link,
    SMELTER_FLEET_LINK_TOKEN: linkToken(SECRET, name),
    SMELTER_FLEET_SDK_GRPC_PORT: '0',
    SMELTER_FLEET_SDK_HTTP_PORT: '0',
  };
  const opts = { env, stdio: 'ignore' as const };
  const emulator = [process.execPath, emulatorMainPath];
  if (mode === 'supervise') {
    const sidecar = spawn(process.execPath, [cliBin, 'supervise', '--log-level', 'error', '--', ...emulator], opts);
    return { name, api, procs: [sidecar], sidecar };
  }
  const smelter = spawn(emulator[0]!, emulator.slice(1), opts);
  const sidecar = spawn(process.execPath, [cliBin, 'sidecar', '--log-level', 'error'], opts);
  return { name, api, procs: [smelter, sidecar], sidecar };
}

async function stop(s: Server): Promise<void> {
  for (const p of s.procs) p.kill('SIGKILL');
  await Promise.all(s.procs.map(exited));
}

const knob = (s: Server, path: string) =>
  fetch(`http://127.0.0.1:${s.api}/_emulator/${path}`, { method: 'POST', body: '{}' }).catch(() => undefined);

/** Detection times (ms) for `fault` over TRIALS fresh servers. */
async function trials(
  store: Store,
  link: string,
  mode: 'supervise' | 'sidecar',
  fault: 'crash' | 'hang' | 'sidecar-silent',
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const s = await launch(store, link, `${mode}-${fault}-${i}`, mode);
    await when(store, s.name, (r) => r.state === 'Ready');
    const unhealthy = when(store, s.name, (r) => r.state === 'Unhealthy');
    let t0: number;
    if (fault === 'crash') {
      t0 = performance.now();
      await knob(s, 'crash');
    } else if (fault === 'hang') {
      await knob(s, 'hang');
      t0 = performance.now();
    } else {
      t0 = performance.now();
      s.sidecar.kill('SIGSTOP');
    }
    out.push((await unhealthy) - t0);
    s.sidecar.kill('SIGCONT');
    await stop(s);
    await store.removeServer(s.name);
  }
  return out;
}

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
}
const rssMiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

/** Idle cost of a stand-alone sidecar beside an idle emulator, vs a bare idle Node process, over `seconds`. */
async function idle(store: Store, link: string, seconds: number) {
  const s = await launch(store, link, 'idle', 'sidecar');
  await when(store, 'idle', (r) => r.state === 'Ready');
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000)); // let both settle after start-up
  const pids = { sidecar: s.sidecar.pid!, bare: bare.pid! };
  const c0 = { sidecar: cpuMs(pids.sidecar), bare: cpuMs(pids.bare) };
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const result = {
    seconds,
    sidecarCpuPercent: ((cpuMs(pids.sidecar) - c0.sidecar) / (seconds * 1000)) * 100,
    bareNodeCpuPercent: ((cpuMs(pids.bare) - c0.bare) / (seconds * 1000)) * 100,
    sidecarRssMiB: rssMiB(pids.sidecar),
    bareNodeRssMiB: rssMiB(pids.bare),
  };
  bare.kill('SIGKILL');
  await stop(s);
  return result;
}

const summary = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { trials: xs.length, medianMs: percentile(sorted, 50), worstMs: sorted.at(-1)! };
};

const store = new MemoryStore();
await store.putFleet(fleet);
const allocator = await startAllocatorServer({ store, linkSecret: SECRET });
const fmt = (label: string, xs: number[]) => {
  const s = summary(xs);
  console.log(`${label.padEnd(46)} median ${s.medianMs.toFixed(0).padStart(5)} ms   worst ${s.worstMs.toFixed(0).padStart(5)} ms   (${s.trials} trials)`);
  return s;
};
console.log(
  `bench:detect  fleet defaults: health period ${fleet.health.periodMs} ms, failure threshold ${fleet.health.failureThreshold}, lease ${fleet.health.leaseTimeoutMs} ms`,
);
const results = {
  crashSupervise: fmt('crash -> Unhealthy (supervise)', await trials(store, allocator.address, 'supervise', 'crash')),
  crashSidecar: fmt('crash -> Unhealthy (sidecar beside Smelter)', await trials(store, allocator.address, 'sidecar', 'crash')),
  hang: fmt('hang -> Unhealthy (sidecar beside Smelter)', await trials(store, allocator.address, 'sidecar', 'hang')),
  sidecarSilent: fmt(
    'sidecar frozen -> Unhealthy (lease)',
    await trials(store, allocator.address, 'sidecar', 'sidecar-silent'),
  ),
  idle: await idle(store, allocator.address, 10),
};
const i = results.idle;
console.log(
  `idle sidecar: CPU ${i.sidecarCpuPercent.toFixed(2)}% (bare Node ${i.bareNodeCpuPercent.toFixed(2)}%), RSS ${i.sidecarRssMiB.toFixed(1)} MiB (bare Node ${i.bareNodeRssMiB.toFixed(1)} MiB) over ${i.seconds} s`,
);
console.log(JSON.stringify(results));
await allocator.close({ force: true });
await store.close();
