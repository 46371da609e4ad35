// pnpm bench:reconcile — one controller reconcile pass over a 10,000-server fleet (target <= 100 ms).
// No processes: a no-I/O runtime and the memory store, so it measures the controller (store reads, planning,
// issuing changes), not Smelter. Tune with BENCH_SERVERS, BENCH_NODES, BENCH_ALLOCATED (fraction), BENCH_PASSES.
import {
  TEMPLATE_HASH_LABEL,
  templateHash,
  type FleetSpec,
  type LaunchedServer,
  type Runtime,
  type ServerExit,
  type ServerLaunch,
} from '@smelter-fleet/core';
import { FleetController, planFleet } from '@smelter-fleet/controller';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { percentile } from './stats.js';

const SERVERS = Number(process.env.BENCH_SERVERS ?? 10_000);
const NODES = Number(process.env.BENCH_NODES ?? 1000);
const ALLOCATED = Number(process.env.BENCH_ALLOCATED ?? 0.6);
const PASSES = Number(process.env.BENCH_PASSES ?? 50);

/** A runtime that runs nothing: every start succeeds at once. */
class NullRuntime implements Runtime {
  private readonly running = new Map<string, LaunchedServer>();
  private port = 10_000;
  async start(launch: ServerLaunch): Promise<LaunchedServer> {
    return this.add(launch.name, `node-${this.running.size % NODES}`);
  }
  add(name: string, node: string): LaunchedServer {
    const p = this.port;
    this.port += 3;
    const launched = { name, address: '10.0.0.1', node, ports: { api: p, whip_whep: p + 1, rtmp: p + 2 } };
    this.running.set(name, launched);
    return launched;
  }
  async stop(name: string): Promise<void> {
    this.running.delete(name);
  }
  onExit(_listener: (exit: ServerExit) => void): () => void {
    return () => {};
  }
  list(): LaunchedServer[] {
    return [...this.running.values()];
  }
  async close(): Promise<void> {
    this.running.clear();
  }
}

const fleet: FleetSpec = {
  name: 'big',
  replicas: SERVERS,
  region: 'local',
  scheduling: 'Packed',
  template: { labels: {}, command: [], env: {}, resources: { requests: {}, limits: {} } },
  strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
  drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 4 * 3_600_000 },
  health: {
    startupTimeoutMs: 60_000,
    periodMs: 500,
    failureThreshold: 3,
    readiness: 'Smelter',
    leaseTimeoutMs: 3000,
    sdkHealthTimeoutMs: 0,
  },
};

async function setup(): Promise<{ store: MemoryStore; runtime: NullRuntime; controller: FleetController }> {
  const store = new MemoryStore();
  const runtime = new NullRuntime();
  await store.putFleet(fleet);
  const hash = templateHash(fleet.template);
  for (let i = 0; i < SERVERS; i++) {
    const name = `big-${String(i).padStart(5, '0')}`;
    const p = runtime.add(name, `node-${i % NODES}`);
    await store.addServer({ ...p, fleet: fleet.name, region: 'local', labels: { [TEMPLATE_HASH_LABEL]: hash } });
    await store.updateServer(name, { event: 'Healthy' });
  }
  for (let i = 0; i < Math.round(SERVERS * ALLOCATED); i++)
    await store.allocate({ fleet: fleet.name, compositionId: `c${i}`, matchLabels: {}, metadata: {} });
  const controller = new FleetController({ store, runtime, stopServersOnExit: false });
  return { store, runtime, controller };
}

async function timePasses(controller: FleetController, passes: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < passes; i++) {
    const t = performance.now();
    await controller.reconcile();
    out.push(performance.now() - t);
    await controller.settled();
  }
  return out.sort((a, b) => a - b);
}

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

async function main(): Promise<void> {
  const { store, controller } = await setup();
  console.log(
    `bench:reconcile: ${SERVERS} servers on ${NODES} nodes, ${Math.round(ALLOCATED * 100)}% allocated; ` +
      `memory store, no-I/O runtime, Node ${process.version}`,
  );
  await timePasses(controller, 5); // warm-up
  const steady = await timePasses(controller, PASSES);
  console.log(
    `steady pass (nothing to change), ${PASSES} passes: p50 ${fmt(percentile(steady, 50))}, ` +
      `p99 ${fmt(percentile(steady, 99))}, max ${fmt(steady.at(-1)!)}`,
  );

  // Planning alone, on the same fleet.
  const servers = await store.listServers();
  const input = {
    replicas: fleet.replicas,
    scheduling: fleet.scheduling,
    strategy: fleet.strategy!,
    servers: servers.map((s) => ({
      name: s.name,
      state: s.state,
      node: s.node,
      createdAt: s.createdAt,
      current: Math.random() < 0.5,
      hasComposition: s.compositionId !== undefined,
      busy: false,
    })),
  };
  const plans: number[] = [];
  for (let i = 0; i < PASSES; i++) {
    const t = performance.now();
    planFleet(input);
    plans.push(performance.now() - t);
  }
  plans.sort((a, b) => a - b);
  console.log(
    `planFleet alone (half the fleet outdated): p50 ${fmt(percentile(plans, 50))}, p99 ${fmt(percentile(plans, 99))}`,
  );

  // A new template, and a smaller fleet: the first pass drains every allocated server, retires Ready ones.
  await store.putFleet({
    ...fleet,
    replicas: Math.round(SERVERS * 0.9),
    template: { ...fleet.template, env: { V: '2' } },
  });
  const t = performance.now();
  await controller.reconcile();
  const rollout = performance.now() - t;
  await controller.settled();
  const after = await store.listServers();
  const draining = after.filter((s) => s.state === 'Draining').length;
  console.log(
    `first rollout pass (drains ${draining} allocated servers, stops and launches within maxSurge/maxUnavailable): ${fmt(rollout)}`,
  );
  const target = 100;
  const p50 = percentile(steady, 50);
  console.log(`target <= ${target} ms per pass: steady p50 ${p50 <= target ? 'met' : 'NOT met'}`);
  await store.close();
}

await main();
