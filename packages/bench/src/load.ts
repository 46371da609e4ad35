// The load generator: a separate process, so client work does not steal the allocator's CPU
// accounting (on 2 cores it still shares the machine; ratios within one run are what count).
import { connectAllocator } from '@smelter-fleet/allocator';
import { createClient } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { summarize, type Summary } from './stats.js';

// argv: addresses (comma-separated: calls spread over them), duration ms, concurrency, rate/s,
// and `allocate-only` to skip the no-op calls (when the no-op ceiling is measured elsewhere in the run).
const [addressArg, durationArg, concurrencyArg, rateArg, mode] = process.argv.slice(2);
const addresses = addressArg!.split(',');
const durationMs = Number(durationArg ?? 5000);
const concurrency = Number(concurrencyArg ?? 64);
const rate = Number(rateArg ?? 1000);
const CHANNELS = 4;

// An allocator with caller auth wants a bearer token; an in-process one without auth ignores it.
const token = process.env.SMELTER_FLEET_TOKEN || undefined;
const clients = Array.from({ length: CHANNELS }, (_, i) =>
  connectAllocator(addresses[i % addresses.length]!, token === undefined ? {} : { token }),
);
const health = clients.map((c) => createClient(HealthDefinition, c.channel));
let seq = 0;

async function allocateOnce(i: number): Promise<number> {
  const c = clients[i % CHANNELS]!;
  const compositionId = `bench-${process.pid}-${seq++}`;
  const t0 = performance.now();
  await c.allocation.allocate({ fleet: 'bench', compositionId });
  return performance.now() - t0;
}

async function noopOnce(i: number): Promise<number> {
  const t0 = performance.now();
  await health[i % CHANNELS]!.check({ service: '' });
  return performance.now() - t0;
}

/** Closed loop: `concurrency` callers back to back for `durationMs`. */
async function closedLoop(call: (i: number) => Promise<number>): Promise<Summary> {
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (performance.now() < end) {
        try {
          latencies.push(await call(w));
        } catch {
          errors++;
        }
      }
    }),
  );
  return summarize(latencies, (performance.now() - t0) / 1000, errors);
}

/** Open loop: calls started at a fixed `rate` per second, whatever the answers do. */
async function openLoop(call: (i: number) => Promise<number>): Promise<Summary> {
  const latencies: number[] = [];
  let errors = 0;
  const total = Math.round((rate * durationMs) / 1000);
  const t0 = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      call(i).then(
        (ms) => void latencies.push(ms),
        () => void errors++,
      ),
    );
  }
  await Promise.all(pending);
  return summarize(latencies, (performance.now() - t0) / 1000, errors);
}

const allocateOnly = mode === 'allocate-only';
// Warm up connections and JIT before measuring.
await closedLoop(allocateOnly ? allocateOnce : noopOnce).catch(() => undefined);
const noop = allocateOnly ? undefined : await closedLoop(noopOnce);
const allocations = await closedLoop(allocateOnce);
const noopPaced = allocateOnly ? undefined : await openLoop(noopOnce);
const paced = await openLoop(allocateOnce);
clients.forEach((c) => c.close());
process.stdout.write(JSON.stringify({ noop, allocations, noopPaced, paced }) + '\n');
