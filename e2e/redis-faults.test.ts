import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { RedisStore } from '@smelter-fleet/redis-store';
import {
  checkHistory,
  historyNow,
  HistoryRecorder,
  RedisServer,
  untilServers,
  type HistoryEvent,
} from '@smelter-fleet/testing';
import { systemClock, isFleetError, type Allocation } from '@smelter-fleet/core';
import { runLoad, seedFleet, startRecycler, startReplicas, stopReplicas, type Replica } from './redis-load.js';

jest.setTimeout(120_000);

const COMPOSITIONS = 2000;

describe('Redis store faults under load', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function setUp(prefix: string, replicaCount: number) {
    const redis = await RedisServer.start({ aof: true });
    cleanup.push(() => redis.stop());
    const url = `${redis.url}?prefix=${prefix}`;
    const store = await RedisStore.connect({ url });
    cleanup.push(() => store.close());
    await seedFleet(store, 96, 4);
    const recycling = new AbortController();
    const recycler = startRecycler(store, recycling.signal);
    cleanup.push(async () => {
      recycling.abort();
      await recycler;
    });
    const replicas = await startReplicas(url, replicaCount);
    cleanup.push(() => stopReplicas(replicas));
    return { redis, store, replicas, url };
  }

  /** After the run: the pool is whole again, nothing is allocated, the history is clean. */
  async function expectClean(store: RedisStore, events: HistoryEvent[], extra = {}) {
    await untilServers(store, (servers) => servers.every((s) => s.state === 'Ready'));
    const final = await store.listAllocations();
    expect(final).toEqual([]);
    const report = checkHistory(events, extra);
    expect(report.violations.slice(0, 5)).toEqual([]);
    expect(report.allocateOk).toBeGreaterThanOrEqual(COMPOSITIONS);
    return report;
  }

  it('redis-server SIGKILLed and restarted mid-load (AOF): no acknowledged allocation lost or duplicated', async () => {
    const { redis, store, replicas, url } = await setUp('fault-redis', 2);
    let failuresSinceKill = 0;
    let killed = false;
    let onFailures: (() => void) | undefined;
    const history = new HistoryRecorder('load', undefined, (e) => {
      if (killed && e.type === 'fail' && ++failuresSinceKill === 100) onFailures?.();
    });
    let listing: { allocations: Allocation[]; from: number; to: number } | undefined;
    let fault: Promise<void> | undefined;
    const result = await runLoad({
      replicas: () => replicas,
      clients: 32,
      compositions: COMPOSITIONS,
      history,
      onAllocated: (n) => {
        if (n !== 700) return;
        fault = (async () => {
          const clientsSawIt = new Promise<void>((resolve) => (onFailures = resolve));
          killed = true;
          await redis.kill();
          await clientsSawIt; // calls fail while Redis is down (fast, UNAVAILABLE)
          await redis.restart();
          // What Redis holds right after the restart: every acknowledged, unreleased allocation. A fresh connection
          // reads it before the replicas' stores are back (they reconnect with back-off, up to a second apart) and
          // their clients release what they held.
          for (;;) {
            const from = historyNow();
            try {
              const fresh = await RedisStore.connect({ url, watchLeases: false });
              try {
                listing = { allocations: await fresh.listAllocations(), from, to: historyNow() };
              } finally {
                await fresh.close();
              }
              return;
            } catch (err) {
              if (!isFleetError(err, 'UNAVAILABLE')) throw err;
              await systemClock.sleep(20);
            }
          }
        })();
      },
    });
    await fault;
    expect(failuresSinceKill).toBeGreaterThanOrEqual(100);
    expect(result.retries).toBeGreaterThan(0);
    expect(listing!.allocations.length).toBeGreaterThan(0);
    await expectClean(store, history.events);
    const mid = checkHistory(history.events, {
      finalAllocations: listing!.allocations,
      finalAt: { from: listing!.from, to: listing!.to },
    });
    expect(mid.violations.slice(0, 5)).toEqual([]);
  });

  it('an allocator replica SIGKILLed mid-load: clients retry on another, nothing lost', async () => {
    const { store, replicas } = await setUp('fault-replica', 3);
    const history = new HistoryRecorder('load');
    let victim: Replica | undefined;
    const result = await runLoad({
      replicas: () => replicas,
      clients: 32,
      compositions: COMPOSITIONS,
      history,
      onAllocated: (n) => {
        if (n !== 700) return;
        victim = replicas[0]!;
        victim.process.child.kill('SIGKILL');
      },
    });
    await victim!.process.exited;
    // Calls to the dead replica failed and were retried elsewhere with the same composition id.
    expect(result.retries).toBeGreaterThan(0);
    expect(result.abandoned).toBe(0);
    await expectClean(store, history.events);
  });
});
