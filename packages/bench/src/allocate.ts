// pnpm bench:allocate: allocations/s and latency against an allocator holding 1,000 servers
// (memory store), beside a no-op unary gRPC call on the same server as the ceiling; then the same
// Allocate load spread over 2 allocator replica processes sharing a Redis store, in the same run.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startAllocatorServer } from '@smelter-fleet/allocator';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { parseFleetFile, type Store } from '@smelter-fleet/core';
import { RedisStore } from '@smelter-fleet/redis-store';
import { startRedis } from './redis-server.js';
import { summarize, type Summary } from './stats.js';
import { seed } from './seed.js';

const SERVERS = Number(process.env.BENCH_SERVERS ?? 1000);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const RATE = Number(process.env.BENCH_RATE ?? 1000);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 2);
/**
 * Servers seeded for the Redis phase: enough for every allocation of the phase, so nothing is recycled
 * while it runs (recycling through the store from this process would take more CPU than the replicas).
 */
const REDIS_SERVERS = Number(process.env.BENCH_REDIS_SERVERS ?? 45_000);
/** Redis persistence for the run: appendonly with appendfsync everysec (the README's advice), unless 0. */
const REDIS_AOF = process.env.BENCH_REDIS_AOF !== '0';

const store = new MemoryStore();
const [fleet] = parseFleetFile(
  `apiVersion: smelterfleet.dev/v1alpha1\nkind: SmelterFleet\nmetadata: {name: bench}\nspec: {replicas: ${SERVERS}}`,
  'bench',
);
await store.putFleet(fleet!);
// Servers registered without processes: this measures the allocator, not Smelter.
for (let i = 0; i < SERVERS; i++) {
  const name = `bench-${String(i).padStart(4, '0')}`;
  await store.addServer({
    name,
    fleet: 'bench',
    region: 'local',
    address: '127.0.0.1',
    ports: { api: 10000 + i, whip_whep: 20000 + i, rtmp: 30000 + i },
    labels: {},
    node: `node-${i % 10}`,
  });
  await store.updateServer(name, { event: 'Healthy' });
}
// Keeps the pool from running dry so only Allocate crosses the wire: every allocation is
// released at once in the store, and the server recycled (the controller's job, done inline).
const recycling = new AbortController();
void (async () => {
  for await (const e of store.watch(recycling.signal)) {
    if (e.type === 'allocation' && !e.released) await store.release(e.allocation.compositionId).catch(() => undefined);
    if (e.type === 'server' && e.server.state === 'Draining' && !e.removed)
      await store.updateServer(e.server.name, { event: 'Recycle' }).catch(() => undefined);
  }
})();

// The allocator's own share of each call: time spent in store.allocate inside the server process.
const storeMs: number[] = [];
const timed = Object.assign(Object.create(store) as MemoryStore, {
  allocate: async (request: Parameters<MemoryStore['allocate']>[0]) => {
    const t0 = performance.now();
    try {
      return await store.allocate(request);
    } finally {
      storeMs.push(performance.now() - t0);
    }
  },
});
const server = await startAllocatorServer({ store: timed });
const loadScript = fileURLToPath(new URL('./load.js', import.meta.url));
const { stdout } = await promisify(execFile)(
  process.execPath,
  [
    ...(process.env.BENCH_PROFILE_LOAD ? ['--cpu-prof', '--cpu-prof-dir=/tmp/profload'] : []),
    loadScript,
    server.address,
    String(DURATION_MS),
    String(CONCURRENCY),
    String(RATE),
  ],
  { maxBuffer: 1 << 20 },
);
recycling.abort();
await server.close({ force: true });
const result = JSON.parse(stdout) as { noop: Summary; allocations: Summary; noopPaced: Summary; paced: Summary };

// The same Allocate load against REPLICAS `smelter-fleet allocator` processes over one Redis.
const redisResult = await (async () => {
  const redis = await startRedis(REDIS_AOF);
  const url = `${redis.url}?prefix=bench`;
  const shared = await RedisStore.connect({ url });
  const replicas: ReturnType<typeof spawn>[] = [];
  try {
    await shared.putFleet(fleet!);
    await seed(shared, REDIS_SERVERS);
    const direct = await storeDirect(shared);
    const cli = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
    // The replicas check callers as in production: a bearer token list.
    const token = randomBytes(24).toString('base64url');
    const tokensFile = join(mkdtempSync(join(tmpdir(), 'bench-auth-')), 'tokens');
    writeFileSync(tokensFile, `bench:${token}\n`, { mode: 0o600 });
    const addresses = await Promise.all(
      Array.from({ length: REPLICAS }, async () => {
        const child = spawn(
          process.execPath,
          [
            cli,
            'allocator',
            '--store',
            url,
            '--allocator-port',
            '0',
            '--log-level',
            'error',
            '--auth-tokens',
            tokensFile,
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
        replicas.push(child);
        for await (const line of createInterface({ input: child.stdout! })) {
          const m = /listening on (\S+)/.exec(line);
          if (m) return m[1]!;
        }
        throw new Error('allocator replica exited before listening');
      }),
    );
    const { stdout: out } = await promisify(execFile)(
      process.execPath,
      [loadScript, addresses.join(','), String(DURATION_MS), String(CONCURRENCY), String(RATE), 'allocate-only'],
      { maxBuffer: 1 << 20, env: { ...process.env, SMELTER_FLEET_TOKEN: token } },
    );
    return { ...(JSON.parse(out) as { allocations: Summary; paced: Summary }), direct };
  } finally {
    for (const r of replicas) {
      const exited = new Promise((resolve) => r.once('exit', resolve));
      r.kill('SIGTERM');
      await exited;
    }
    await shared.close();
    await redis.stop();
  }
})();

const row = (name: string, s: Summary) =>
  `${name.padEnd(34)} ${s.perSecond.toFixed(0).padStart(8)}/s  p50 ${s.p50Ms.toFixed(2).padStart(6)} ms  p99 ${s.p99Ms.toFixed(2).padStart(6)} ms  errors ${s.errors}`;
console.log(
  `bench:allocate  servers=${SERVERS} (Redis phase: ${REDIS_SERVERS}, not recycled) duration=${DURATION_MS}ms ` +
    `concurrency=${CONCURRENCY} (load generator in a separate process)`,
);
console.log(row('no-op unary gRPC (ceiling)', result.noop));
console.log(row('Allocate, closed loop', result.allocations));
console.log(row(`no-op, open loop at ${RATE}/s`, result.noopPaced));
console.log(row(`Allocate, open loop at ${RATE}/s`, result.paced));
const inStore = summarize(storeMs, 1, 0);
console.log(
  `${'  of which store.allocate (server)'.padEnd(34)}            p50 ${inStore.p50Ms.toFixed(3)} ms  p99 ${inStore.p99Ms.toFixed(3)} ms`,
);
console.log(row(`Redis, ${REPLICAS} replicas: Allocate, closed`, redisResult.allocations));
console.log(row(`Redis, ${REPLICAS} replicas: open loop ${RATE}/s`, redisResult.paced));
console.log(row('  RedisStore.allocate direct, closed', redisResult.direct.closed));
console.log(row(`  RedisStore.allocate direct, ${RATE}/s`, redisResult.direct.paced));
console.log(
  `Allocate / no-op: throughput ${(result.allocations.perSecond / result.noop.perSecond).toFixed(2)}, ` +
    `p99 at ${RATE}/s ${(result.paced.p99Ms / result.noopPaced.p99Ms).toFixed(2)}`,
);
console.log(
  `Redis (${REPLICAS} replicas, AOF ${REDIS_AOF ? 'everysec' : 'off'}) / memory: throughput ` +
    `${(redisResult.allocations.perSecond / result.allocations.perSecond).toFixed(2)}, ` +
    `p99 at ${RATE}/s ${(redisResult.paced.p99Ms / result.paced.p99Ms).toFixed(2)}`,
);
console.log(JSON.stringify({ servers: SERVERS, ...result, storeAllocate: inStore, redis: redisResult }));

/**
 * The Redis store's own capacity, without gRPC: RedisStore.allocate from this process, 1 s closed loop
 * (CONCURRENCY in flight) and 2 s paced at RATE. Uses up to ~15,000 of the seeded servers.
 */
async function storeDirect(target: Store): Promise<{ closed: Summary; paced: Summary }> {
  let n = 0;
  const once = async () => {
    const t0 = performance.now();
    await target.allocate({ fleet: 'bench', compositionId: `direct-${n++}`, matchLabels: {}, metadata: {} });
    return performance.now() - t0;
  };
  const closedMs: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() - t0 < 1000) closedMs.push(await once().catch(() => (errors++, NaN)));
    }),
  );
  const closed = summarize(
    closedMs.filter((x) => !Number.isNaN(x)),
    (performance.now() - t0) / 1000,
    errors,
  );
  const pacedMs: number[] = [];
  let pacedErrors = 0;
  const pending: Promise<void>[] = [];
  const t1 = performance.now();
  for (let i = 0; i < RATE * 2; i++) {
    const wait = t1 + (i * 1000) / RATE - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      once().then(
        (ms) => void pacedMs.push(ms),
        () => void pacedErrors++,
      ),
    );
  }
  await Promise.all(pending);
  return { closed, paced: summarize(pacedMs, (performance.now() - t1) / 1000, pacedErrors) };
}
