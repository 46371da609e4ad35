import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { isFleetError, systemClock, type StoreEvent } from '@smelter-fleet/core';
import {
  collect,
  expectCode,
  fleetSpec,
  freePort,
  newServer,
  recordingLogger,
  RedisServer,
  storeContract,
} from '@smelter-fleet/testing';
import { Redis } from 'ioredis';
import { RedisStore } from './redis-store.js';

let redis: RedisServer;
let installs = 0;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.stop();
});

// Each store gets its own installation prefix: a fresh, empty store on the shared redis-server.
const fresh = (extra: Partial<Parameters<typeof RedisStore.connect>[0]> = {}) =>
  RedisStore.connect({ url: redis.url, prefix: `t${process.pid}-${installs++}`, ...extra });

storeContract('RedisStore', (options) => fresh(options));

describe('RedisStore replicas on one Redis', () => {
  const prefix = () => `r${process.pid}-${installs++}`;

  it('shares state and the change feed between replicas, and keeps installations apart', async () => {
    const p = prefix();
    const a = await RedisStore.connect({ url: redis.url, prefix: p });
    const b = await RedisStore.connect({ url: redis.url, prefix: p });
    const other = await RedisStore.connect({ url: redis.url, prefix: prefix() });
    try {
      const ac = new AbortController();
      const onB = collect(b.watch(ac.signal), (seen) => seen.some((e) => e.type === 'allocation'));
      await a.putFleet(fleetSpec('f'));
      await a.addServer(newServer('s1', 'f'));
      await a.updateServer('s1', { event: 'Healthy' });
      const allocation = await a.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
      const events = await onB;
      ac.abort();
      expect(events.at(-1)).toMatchObject({
        type: 'allocation',
        allocation: { serverName: 's1', token: allocation.token },
      });
      expect(await b.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} })).toEqual(allocation);
      expect(await other.listFleets()).toEqual([]);
      expect(await other.getAllocation('c1')).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });

  it('lets exactly one replica mark a server whose lease ran out', async () => {
    const p = prefix();
    const logs = [recordingLogger(), recordingLogger(), recordingLogger()];
    const stores = await Promise.all(logs.map((logger) => RedisStore.connect({ url: redis.url, prefix: p, logger })));
    try {
      await stores[0]!.putFleet(fleetSpec('f'));
      await stores[0]!.addServer(newServer('s1', 'f'));
      const ready = await stores[0]!.updateServer('s1', { event: 'Healthy' });
      await stores[1]!.renewLease('s1', 100);
      const handled = await Promise.all(logs.map((l) => l.waitFor('lease expiry handled')));
      expect(handled.filter((h) => h.fields.won)).toHaveLength(1);
      const s = await stores[2]!.getServer('s1');
      expect(s).toMatchObject({ state: 'Unhealthy', version: ready.version + 1 });
      expect(s?.reason).toMatch(/100 ms \(lease expired\)/);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('marks a lease that expired while no replica listened when one subscribes', async () => {
    const p = prefix();
    const deaf = await RedisStore.connect({ url: redis.url, prefix: p, watchLeases: false });
    const raw = new Redis(redis.url);
    const sub = new Redis(redis.url);
    try {
      await raw.config('SET', 'notify-keyspace-events', 'Ex');
      await deaf.putFleet(fleetSpec('f'));
      await deaf.addServer(newServer('s1', 'f'));
      await deaf.updateServer('s1', { event: 'Healthy' });
      const leaseKey = `sf:{${p}}:lease:s1`;
      await sub.subscribe('__keyevent@0__:expired');
      const gone = new Promise<void>((resolve) =>
        sub.on('message', (_c: string, key: string) => key === leaseKey && resolve()),
      );
      await deaf.renewLease('s1', 50);
      await gone;
      expect((await deaf.getServer('s1'))?.state).toBe('Ready'); // nobody was listening
      const late = await RedisStore.connect({ url: redis.url, prefix: p });
      try {
        expect(await late.getServer('s1')).toMatchObject({ state: 'Unhealthy' });
      } finally {
        await late.close();
      }
    } finally {
      raw.disconnect();
      sub.disconnect();
      await deaf.close();
    }
  });

  it('re-emits the current state to a watcher that missed feed entries', async () => {
    const p = prefix();
    const store = await RedisStore.connect({ url: redis.url, prefix: p });
    const raw = new Redis(redis.url);
    try {
      await store.putFleet(fleetSpec('f'));
      await store.addServer(newServer('s1', 'f'));
      const ac = new AbortController();
      const names = (events: StoreEvent[]) => events.flatMap((e) => (e.type === 'server' ? [e.server.name] : []));
      // s1 does not change after watch(): only a resync shows it.
      const seen = collect(
        store.watch(ac.signal),
        (events) => names(events).includes('s1') && names(events).includes('s2'),
      );
      // What MAXLEN trimming does to a slow reader: entries it never read are gone.
      await raw.incr(`sf:{${p}}:seq`);
      await store.addServer(newServer('s2', 'f'));
      const events = await seen;
      ac.abort();
      expect(events.filter((e) => e.type === 'fleet')).toHaveLength(1);
      expect(names(events).sort()).toEqual(['s1', 's2']);
    } finally {
      raw.disconnect();
      await store.close();
    }
  });
});

describe('RedisStore when Redis goes away', () => {
  it('fails with UNAVAILABLE while Redis is down, and recovers by itself with nothing lost (AOF)', async () => {
    const own = await RedisServer.start({ aof: true });
    const store = await RedisStore.connect({ url: own.url, commandTimeoutMs: 500 });
    try {
      await store.putFleet(fleetSpec('f'));
      for (const n of ['s1', 's2', 's3']) {
        await store.addServer(newServer(n, 'f'));
        await store.updateServer(n, { event: 'Healthy' });
      }
      const before = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
      await own.kill();
      await expectCode(
        store.allocate({ fleet: 'f', compositionId: 'c2', matchLabels: {}, metadata: {} }),
        'UNAVAILABLE',
      );
      await expectCode(store.getServer('s1'), 'UNAVAILABLE');
      const ac = new AbortController();
      const seen = collect(store.watch(ac.signal), (events) =>
        events.some((e) => e.type === 'allocation' && e.allocation.compositionId === 'c2'),
      );
      await own.restart();
      // A client retries while the store reconnects (ioredis retries at most a second apart).
      const after = await retryUnavailable(() =>
        store.allocate({ fleet: 'f', compositionId: 'c2', matchLabels: {}, metadata: {} }),
      );
      expect(after.serverName).toBe('s2');
      expect(await store.getAllocation('c1')).toEqual(before);
      await seen; // the feed is back too
      ac.abort();
      // Leases still expire: the restarted Redis had forgotten notify-keyspace-events, the store set it again.
      const ac2 = new AbortController();
      const unhealthy = collect(store.watch(ac2.signal), (events) =>
        events.some((e) => e.type === 'server' && e.server.name === 's3' && e.server.state === 'Unhealthy'),
      );
      await store.renewLease('s3', 50);
      await unhealthy;
      ac2.abort();
    } finally {
      await store.close();
      await own.stop();
    }
  });

  it('fails with UNAVAILABLE when Redis hangs (SIGSTOP) instead of waiting, and goes on once it resumes', async () => {
    const own = await RedisServer.start();
    const store = await RedisStore.connect({ url: own.url, commandTimeoutMs: 300 });
    try {
      await store.putFleet(fleetSpec('f'));
      process.kill(own.pid!, 'SIGSTOP');
      try {
        await expectCode(store.getFleet('f'), 'UNAVAILABLE');
      } finally {
        process.kill(own.pid!, 'SIGCONT');
      }
      expect((await retryUnavailable(() => store.getFleet('f')))?.name).toBe('f');
    } finally {
      await store.close();
      await own.stop();
    }
  });

  it('fails at connect with UNAVAILABLE naming the URL without its password', async () => {
    const port = await freePort();
    const err = await expectCode(
      RedisStore.connect({ url: `redis://app:s3cret@127.0.0.1:${port}`, connectTimeoutMs: 500 }),
      'UNAVAILABLE',
    );
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).not.toContain('s3cret');
  });
});

async function retryUnavailable<T>(f: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      if (!isFleetError(err, 'UNAVAILABLE') || attempt > 100) throw err;
      await systemClock.sleep(50);
    }
  }
}
