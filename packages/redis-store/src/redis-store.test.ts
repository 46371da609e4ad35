import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { matchesLabels, selectServer, type Store } from '@smelter-fleet/core';
import { fleetSpec, newServer, RedisServer, storeContract } from '@smelter-fleet/testing';
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

storeContract('RedisStore', () => fresh());

describe('RedisStore selection', () => {
  // The Lua script picks from its indexes; it must pick what core's pure selectServer picks.
  it.each(['Packed', 'Distributed'] as const)('matches selectServer on random fleets (%s)', async (scheduling) => {
    let seed = 11;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 8; round++) {
      let now = 0;
      const store: Store = await fresh({ clock: { now: () => now, sleep: async () => {} } });
      try {
        await store.putFleet(fleetSpec('f', { scheduling }));
        for (let i = 0; i < 30; i++) {
          now = random(5); // equal ages happen, so the name tie-break is exercised
          await store.addServer(
            newServer(`s${i}`, 'f', { node: `n${random(4)}`, labels: { gpu: random(2) ? 'a' : 'b' } }),
          );
          await store.updateServer(`s${i}`, { event: 'Healthy' });
        }
        for (let i = 0; i < 40; i++) {
          const servers = await store.listServers();
          const matchLabels: Record<string, string> = random(3) === 0 ? { gpu: 'a' } : {};
          const allocated = new Map<string, number>();
          for (const s of servers) if (s.state === 'Allocated') allocated.set(s.node, (allocated.get(s.node) ?? 0) + 1);
          const ready = servers.filter((s) => s.state === 'Ready' && matchesLabels(s, matchLabels));
          const want = selectServer(ready, allocated, scheduling);
          const got = await store
            .allocate({ fleet: 'f', compositionId: `c${round}-${i}`, matchLabels, metadata: {} })
            .catch(() => undefined);
          expect(got?.serverName).toBe(want?.name);
          if (got && random(3) === 0) {
            await store.release(got.compositionId);
            await store.updateServer(got.serverName, { event: 'Recycle' });
          }
        }
      } finally {
        await store.close();
      }
    }
  });
});
