import { setMaxListeners } from 'node:events';
import { FleetController } from '@smelter-fleet/controller';
import {
  FLEET_API_VERSION,
  FLEET_KIND,
  fleetSpecFromObject,
  isFleetError,
  silentLogger,
  type AutoscalerSpec,
  type Logger,
  type ServerState,
} from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { FleetAutoscaler, webhooksOf } from '../autoscaler.js';
import { oracleIdleMs } from './oracle.js';
import { SimClock } from './sim-clock.js';
import { SimRuntime } from './sim-runtime.js';
import type { Trace } from './trace.js';

export interface SimulateOptions {
  trace: Trace;
  /** The autoscaler under test; its fleetName is replaced by the simulated fleet's. */
  autoscaler: AutoscalerSpec;
  /** Launch to Ready, ms. Default 30000. */
  coldStartMs?: number;
  /** Time a released server drains (outputs flushing) before it is recycled, ms. Default 5000. */
  flushTimeMs?: number;
  /** How long an arrival waits for a server before it counts as failed, ms. Default 120000. */
  waitBudgetMs?: number;
  /** Simulated time before the trace starts, for the fleet to come up, ms. Not measured. Default coldStart + 60 s. */
  warmupMs?: number;
  /** Wall-clock epoch ms of the trace's time zero (schedules are evaluated in UTC). Default 2026-11-23T00:00:00Z, a Monday. */
  startAt?: number;
  /** Replicas of the fleet before the autoscaler's first decision. Default 0. */
  initialReplicas?: number;
  /** The controller's resync period in virtual time, ms. Default 5000 (it also reacts to every change). */
  resyncIntervalMs?: number;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface SimReport {
  trace: string;
  policy: string;
  arrivals: number;
  /** Allocations that found a Ready server at once. */
  warm: number;
  warmPercent: number;
  /** Allocations that waited for a server and got one within the budget. */
  waited: number;
  /** Arrivals with no server within the wait budget. */
  failed: number;
  /** Over all served allocations (warm ones wait 0), ms. */
  waitP50Ms: number;
  waitP99Ms: number;
  waitMaxMs: number;
  /** Server-seconds Starting + Ready over the trace's period: capacity paid for and not rendering. */
  idleServerSeconds: number;
  /** The same for an all-knowing scheduler serving every arrival warm (a lower bound). */
  oracleIdleServerSeconds: number;
  /** idle / oracle idle. */
  idleVsOracle: number;
  /** Server-seconds in each state over the trace's period. */
  stateSeconds: Partial<Record<ServerState, number>>;
  peakServers: number;
  launches: number;
  /** Replica changes the autoscaler wrote. */
  scaleWrites: number;
  /** Wall-clock time the simulation took, ms. */
  wallMs: number;
}

const FLEET = 'sim';

/** A simulation that cannot run as asked. */
export class SimulateError extends Error {
  override readonly name = 'SimulateError';
}

/**
 * Replays a trace against the real FleetController, MemoryStore and FleetAutoscaler in virtual time (SimClock:
 * time jumps to the next timer only when everything is idle) with a simulated runtime. Deterministic for a trace.
 */
export async function simulate(options: SimulateOptions): Promise<SimReport> {
  const wallStart = performance.now();
  const { trace } = options;
  // A webhook answers in real time, which virtual time cannot wait for.
  if (webhooksOf(options.autoscaler.policy).length > 0)
    throw new SimulateError(`autoscaler ${options.autoscaler.name}: the simulator cannot run Webhook policies`);
  const coldStartMs = options.coldStartMs ?? 30_000;
  const flushTimeMs = options.flushTimeMs ?? 5000;
  const waitBudgetMs = options.waitBudgetMs ?? 120_000;
  const warmupMs = options.warmupMs ?? coldStartMs + 60_000;
  const t0 = options.startAt ?? Date.parse('2026-11-23T00:00:00Z');
  const horizon = t0 + trace.durationMs;
  const logger = options.logger ?? silentLogger;

  const clock = new SimClock(t0 - warmupMs);
  const store = new MemoryStore({ clock });
  await store.putFleet(
    fleetSpecFromObject({
      apiVersion: FLEET_API_VERSION,
      kind: FLEET_KIND,
      metadata: { name: FLEET },
      spec: {
        replicas: options.initialReplicas ?? 0,
        drain: { onRelease: 'Recycle', flushTime: `${flushTimeMs}ms`, maxDrainTime: '168h' },
        health: { startupTimeout: `${coldStartMs + 60_000}ms` },
      },
    }),
  );
  const runtime = new SimRuntime({ store, clock, coldStartMs });
  const controller = new FleetController({
    store,
    runtime,
    clock,
    logger,
    resyncIntervalMs: options.resyncIntervalMs ?? 5000,
  });
  const autoscaler = new FleetAutoscaler({
    store,
    clock,
    logger,
    autoscalers: [{ ...options.autoscaler, fleetName: FLEET }],
    waitingTtlMs: waitBudgetMs,
  });
  const allocator = autoscaler.allocatorStore();

  // Accounting: time each server spends in each state, clipped to [t0, horizon).
  const since = new Map<string, { state: ServerState; at: number }>();
  const stateMs: Partial<Record<ServerState, number>> = {};
  let peakServers = 0;
  const account = (name: string, next: ServerState | undefined) => {
    const now = clock.now();
    const prev = since.get(name);
    if (prev) {
      const ms = Math.max(0, Math.min(now, horizon) - Math.max(prev.at, t0));
      stateMs[prev.state] = (stateMs[prev.state] ?? 0) + ms;
    }
    if (next) since.set(name, { state: next, at: now });
    else since.delete(name);
    if (since.size > peakServers && now >= t0) peakServers = since.size;
  };

  // Arrivals: try at once; if no server is Ready, wait (first come, first served) up to the budget.
  const waits: number[] = [];
  let warm = 0;
  let failed = 0;
  const queue: { id: string; arrivedAt: number; durationMs: number; gaveUp: AbortController }[] = [];
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  setMaxListeners(0, signal); // one listener per running composition's release timer
  const tryAllocate = async (id: string): Promise<boolean> => {
    try {
      await allocator.allocate({ fleet: FLEET, compositionId: id, matchLabels: {}, metadata: {} });
      return true;
    } catch (err) {
      if (isFleetError(err, 'RESOURCE_EXHAUSTED')) return false;
      throw err;
    }
  };
  const served = (id: string, arrivedAt: number, durationMs: number) => {
    waits.push(clock.now() - arrivedAt);
    void clock.sleep(durationMs, signal).then(
      () => store.release(id),
      () => undefined,
    );
  };
  let serving = false;
  const serveWaiting = async () => {
    if (serving) return;
    serving = true;
    try {
      while (queue.length > 0 && (await tryAllocate(queue[0]!.id))) {
        const w = queue.shift()!;
        w.gaveUp.abort();
        served(w.id, w.arrivedAt, w.durationMs);
      }
    } finally {
      serving = false;
    }
  };
  const arrive = async (id: string, durationMs: number) => {
    const arrivedAt = clock.now();
    // Like the allocator, every request tries first (so a miss is seen as demand), whoever else is waiting.
    if (await tryAllocate(id)) {
      warm++;
      served(id, arrivedAt, durationMs);
      return;
    }
    const gaveUp = new AbortController();
    queue.push({ id, arrivedAt, durationMs, gaveUp });
    clock.sleep(waitBudgetMs, AbortSignal.any([gaveUp.signal, signal])).then(
      () => {
        const i = queue.findIndex((w) => w.id === id);
        if (i >= 0) {
          queue.splice(i, 1);
          failed++;
        }
      },
      () => undefined,
    );
  };

  const feed = store.watch(signal);
  const watching = (async () => {
    for await (const event of feed) {
      if (event.type !== 'server') continue;
      account(event.server.name, event.removed ? undefined : event.server.state);
      if (!event.removed && event.server.state === 'Ready') await serveWaiting();
    }
  })();
  const driving = (async () => {
    let i = 0;
    for (const a of trace.arrivals) {
      const id = `c${i++}`;
      await clock.sleep(t0 + a.atMs - clock.now(), signal);
      void arrive(id, a.durationMs);
    }
  })().catch(() => undefined);

  const runs = Promise.all([
    controller.run(signal),
    autoscaler.run(signal),
    runtime.runSidecars(signal),
    watching,
    driving,
  ]);
  let finished = false;
  void runs.finally(() => (finished = true));
  await clock.runUntil(horizon);
  for (const name of [...since.keys()]) account(name, since.get(name)!.state); // close the books at the horizon
  const scaleWrites = autoscaler.status()[0]?.scales ?? 0;
  failed += queue.length; // still waiting when the trace ends: not served
  stop.abort();
  // Shutting down may still wait on virtual timers (e.g. a launch retry delay): keep time moving until done.
  while (!finished) if (!(await clock.advance())) await clock.idle();
  await runs;
  await store.close();

  const sorted = [...waits].sort((a, b) => a - b);
  const pct = (p: number) =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
  const idleMs = (stateMs.Starting ?? 0) + (stateMs.Ready ?? 0);
  const oracleMs = oracleIdleMs(trace, coldStartMs, flushTimeMs);
  const arrivals = trace.arrivals.length;
  return {
    trace: trace.name,
    policy: options.autoscaler.name,
    arrivals,
    warm,
    warmPercent: arrivals === 0 ? 100 : (100 * warm) / arrivals,
    waited: waits.length - warm,
    failed,
    waitP50Ms: pct(0.5),
    waitP99Ms: pct(0.99),
    waitMaxMs: sorted.at(-1) ?? 0,
    idleServerSeconds: idleMs / 1000,
    oracleIdleServerSeconds: oracleMs / 1000,
    idleVsOracle: oracleMs === 0 ? (idleMs === 0 ? 1 : Infinity) : idleMs / oracleMs,
    stateSeconds: Object.fromEntries(Object.entries(stateMs).map(([k, v]) => [k, v / 1000])),
    peakServers,
    launches: runtime.launches,
    scaleWrites,
    wallMs: Math.round(performance.now() - wallStart),
  };
}
