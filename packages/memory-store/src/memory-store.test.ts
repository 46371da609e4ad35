import { describe, expect, it } from '@jest/globals';
import { matchesLabels, selectServer } from '@smelter-fleet/core';
import { fleetSpec, newServer, storeContract } from '@smelter-fleet/testing';
import { MemoryStore } from './memory-store.js';

storeContract('MemoryStore', async () => new MemoryStore());

describe('MemoryStore selection', () => {
  // The store picks from its indexes; it must pick what core's pure selectServer picks.
  it.each(['Packed', 'Distributed'] as const)('matches selectServer on random fleets (%s)', async (scheduling) => {
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 20; round++) {
      let now = 0;
      const store = new MemoryStore({ clock: { now: () => now, sleep: async () => {} } });
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
    }
  });
});
