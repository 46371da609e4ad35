import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { RedisStore } from '@smelter-fleet/redis-store';
import { checkHistory, HistoryRecorder, RedisServer, untilServers } from '@smelter-fleet/testing';
import { runLoad, seedFleet, startRecycler, startReplicas, stopReplicas, type Replica } from './redis-load.js';

jest.setTimeout(150_000);

describe('Redis store under concurrent load', () => {
  let redis: RedisServer;
  let store: RedisStore;
  let replicas: Replica[] = [];
  const recycling = new AbortController();
  beforeAll(async () => {
    redis = await RedisServer.start();
    store = await RedisStore.connect({ url: `${redis.url}?prefix=concurrency` });
  });
  afterAll(async () => {
    recycling.abort();
    await stopReplicas(replicas);
    await store.close();
    await redis.stop();
  });

  it('4 allocator processes x 64 clients, 20,000 allocations: no server held twice, every retry the same', async () => {
    await seedFleet(store, 128, 8);
    const recycler = startRecycler(store, recycling.signal);
    replicas = await startReplicas(`${redis.url}?prefix=concurrency`, 4);
    const history = new HistoryRecorder('load');
    const result = await runLoad({ replicas: () => replicas, clients: 64, compositions: 20_000, history });

    // Every allocation was released at the end: the pool is whole again once the recycler caught up.
    await untilServers(store, (servers) => servers.every((s) => s.state === 'Ready'));
    const final = await store.listAllocations();
    const report = checkHistory(history.events, { finalAllocations: final });
    console.log(`concurrency: ${JSON.stringify({ ...result, ...report, violations: report.violations.length })}`);
    expect(report.violations.slice(0, 5)).toEqual([]);
    expect(final).toEqual([]);
    expect(report.allocateOk).toBeGreaterThanOrEqual(20_000);
    expect(report.retriedCompositions).toBeGreaterThan(1000);
    // The pool ran dry at times: the allocations really contended for servers.
    expect(result.exhausted).toBeGreaterThan(0);
    recycling.abort();
    await recycler;
  });
});
