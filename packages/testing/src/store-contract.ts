import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import {
  FleetError,
  matchesLabels,
  selectServer,
  type Clock,
  type FleetErrorCode,
  type FleetSpec,
  type NewServer,
  type Store,
  type StoreEvent,
} from '@smelter-fleet/core';

export function fleetSpec(name: string, overrides: Partial<FleetSpec> = {}): FleetSpec {
  return {
    name,
    replicas: 3,
    region: 'local',
    scheduling: 'Packed',
    template: { labels: {}, command: [], env: {} },
    drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 3_600_000 },
    health: {
      startupTimeoutMs: 10_000,
      periodMs: 100,
      failureThreshold: 3,
      readiness: 'Smelter',
      leaseTimeoutMs: 3000,
      sdkHealthTimeoutMs: 0,
    },
    ...overrides,
  };
}

export function newServer(name: string, fleet: string, overrides: Partial<NewServer> = {}): NewServer {
  return {
    name,
    fleet,
    region: 'local',
    address: '127.0.0.1',
    ports: { api: 1, whip_whep: 2, rtmp: 3 },
    labels: {},
    node: 'node-a',
    ...overrides,
  };
}

export async function expectCode(promise: Promise<unknown>, code: FleetErrorCode): Promise<FleetError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(FleetError);
    expect((e as FleetError).code).toBe(code);
    return e as FleetError;
  }
  throw new Error(`expected a FleetError ${code}`);
}

/** Collects events from a watch until `until` says stop. */
export async function collect(
  events: AsyncIterable<StoreEvent>,
  until: (seen: StoreEvent[]) => boolean,
): Promise<StoreEvent[]> {
  const seen: StoreEvent[] = [];
  for await (const e of events) {
    seen.push(e);
    if (until(seen)) break;
  }
  return seen;
}

/** Adds a server and brings it to Ready. */
async function readyServer(store: Store, name: string, fleet: string, overrides: Partial<NewServer> = {}) {
  await store.addServer(newServer(name, fleet, overrides));
  return store.updateServer(name, { event: 'Healthy' });
}

const req = (
  compositionId: string,
  fleet = 'f',
  extra: Partial<{ matchLabels: Record<string, string>; metadata: Record<string, string> }> = {},
) => ({
  fleet,
  compositionId,
  matchLabels: extra.matchLabels ?? {},
  metadata: extra.metadata ?? {},
});

/**
 * The one contract every Store implementation passes (Colyseus style): run it from each
 * implementation's test file with a factory for a fresh, empty store.
 */
export function storeContract(name: string, makeStore: (options?: { clock?: Clock }) => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    // Stores pick from their own indexes (or a Lua script); each must pick what core's pure selectServer picks.
    it.each(['Packed', 'Distributed'] as const)('selects as selectServer on random fleets (%s)', async (scheduling) => {
      let seed = 11;
      const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
      for (let round = 0; round < 8; round++) {
        let now = 0;
        const own = await makeStore({ clock: { now: () => now, sleep: async () => {} } });
        try {
          await own.putFleet(fleetSpec('f', { scheduling }));
          for (let i = 0; i < 30; i++) {
            now = random(5); // equal ages happen, so the name tie-break is exercised
            await own.addServer(
              newServer(`s${i}`, 'f', { node: `n${random(4)}`, labels: { gpu: random(2) ? 'a' : 'b' } }),
            );
            await own.updateServer(`s${i}`, { event: 'Healthy' });
          }
          for (let i = 0; i < 40; i++) {
            const servers = await own.listServers();
            const matchLabels: Record<string, string> = random(3) === 0 ? { gpu: 'a' } : {};
            const allocated = new Map<string, number>();
            for (const s of servers)
              if (s.state === 'Allocated') allocated.set(s.node, (allocated.get(s.node) ?? 0) + 1);
            const ready = servers.filter((s) => s.state === 'Ready' && matchesLabels(s, matchLabels));
            const want = selectServer(ready, allocated, scheduling);
            const got = await own
              .allocate({ fleet: 'f', compositionId: `c${round}-${i}`, matchLabels, metadata: {} })
              .catch(() => undefined);
            expect(got?.serverName).toBe(want?.name);
            if (got && random(3) === 0) {
              await own.release(got.compositionId);
              await own.updateServer(got.serverName, { event: 'Recycle' });
            }
          }
        } finally {
          await own.close();
        }
      }
    });

    let store: Store;
    beforeEach(async () => {
      store = await makeStore();
      await store.putFleet(fleetSpec('f'));
    });
    afterEach(async () => {
      await store.close();
    });

    it('stores, lists and removes fleets', async () => {
      await store.putFleet(fleetSpec('g', { replicas: 7 }));
      expect((await store.getFleet('g'))?.replicas).toBe(7);
      expect((await store.listFleets()).map((f) => f.name).sort()).toEqual(['f', 'g']);
      await store.removeFleet('g');
      expect(await store.getFleet('g')).toBeUndefined();
      await expectCode(store.removeFleet('g'), 'NOT_FOUND');
    });

    it('adds servers as Starting and refuses a duplicate name', async () => {
      const s = await store.addServer(newServer('s1', 'f'));
      expect(s).toMatchObject({ name: 's1', state: 'Starting', version: 1 });
      await expectCode(store.addServer(newServer('s1', 'f')), 'ALREADY_EXISTS');
      expect((await store.listServers({ fleet: 'f' })).map((x) => x.name)).toEqual(['s1']);
      expect(await store.listServers({ fleet: 'other' })).toEqual([]);
    });

    it('applies transitions through the table and refuses the rest', async () => {
      await store.addServer(newServer('s1', 'f'));
      const ready = await store.updateServer('s1', { event: 'Healthy', pid: 42 });
      expect(ready).toMatchObject({ state: 'Ready', pid: 42, version: 2 });
      await expectCode(store.updateServer('s1', { event: 'Recycle' }), 'FAILED_PRECONDITION');
      await expectCode(store.updateServer('s1', { event: 'Allocate' }), 'FAILED_PRECONDITION');
      await expectCode(store.updateServer('nope', { event: 'Healthy' }), 'NOT_FOUND');
      expect((await store.getServer('s1'))?.state).toBe('Ready');
    });

    it('applies concurrent updates of one server one after another', async () => {
      const s = await store.addServer(newServer('s1', 'f'));
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.updateServer('s1', { reason: `r${i}` })),
      );
      // Every write is counted: none was lost to another writer's stale read.
      expect(new Set(results.map((r) => r.version)).size).toBe(20);
      expect((await store.getServer('s1'))?.version).toBe(s.version + 20);
    });

    it('refuses a write against a stale version', async () => {
      const s = await store.addServer(newServer('s1', 'f'));
      await store.updateServer('s1', { reason: 'x', expectedVersion: s.version });
      await expectCode(store.updateServer('s1', { reason: 'y', expectedVersion: s.version }), 'ABORTED');
      expect((await store.getServer('s1'))?.reason).toBe('x');
    });

    it('allocates a Ready server once, idempotently', async () => {
      await readyServer(store, 's1', 'f');
      const a = await store.allocate(req('c1', 'f', { metadata: { owner: 'me' } }));
      expect(a).toMatchObject({
        compositionId: 'c1',
        serverName: 's1',
        fleet: 'f',
        address: '127.0.0.1',
        metadata: { owner: 'me' },
      });
      expect(a.ports).toEqual({ api: 1, whip_whep: 2, rtmp: 3 });
      expect(a.token.length).toBeGreaterThanOrEqual(32);
      expect(await store.allocate(req('c1'))).toEqual(a);
      expect(await store.getAllocation('c1')).toEqual(a);
      expect(await store.getServer('s1')).toMatchObject({ state: 'Allocated', compositionId: 'c1' });
      await expectCode(store.allocate(req('c2')), 'RESOURCE_EXHAUSTED');
    });

    it('refuses a composition id already allocated in another fleet', async () => {
      await store.putFleet(fleetSpec('g'));
      await readyServer(store, 's1', 'f');
      await readyServer(store, 's2', 'g');
      await store.allocate(req('c1', 'f'));
      await expectCode(store.allocate(req('c1', 'g')), 'FAILED_PRECONDITION');
    });

    it('answers NOT_FOUND for an unknown fleet and RESOURCE_EXHAUSTED for an empty one', async () => {
      await expectCode(store.allocate(req('c1', 'nope')), 'NOT_FOUND');
      await store.addServer(newServer('s1', 'f'));
      await expectCode(store.allocate(req('c1')), 'RESOURCE_EXHAUSTED');
    });

    it('selects by labels, across fleets when no fleet is named', async () => {
      await store.putFleet(fleetSpec('g'));
      await readyServer(store, 's1', 'f', { labels: { gpu: 'none' } });
      await readyServer(store, 's2', 'g', { labels: { gpu: 't4' } });
      expect((await store.allocate(req('c1', '', { matchLabels: { gpu: 't4' } }))).serverName).toBe('s2');
      await expectCode(store.allocate(req('c2', 'f', { matchLabels: { gpu: 't4' } })), 'RESOURCE_EXHAUSTED');
    });

    it('packs onto the busiest node, or spreads when Distributed', async () => {
      await readyServer(store, 'a1', 'f', { node: 'a' });
      await readyServer(store, 'a2', 'f', { node: 'a' });
      await readyServer(store, 'b1', 'f', { node: 'b' });
      await readyServer(store, 'b2', 'f', { node: 'b' });
      const first = await store.allocate(req('c1'));
      const second = await store.allocate(req('c2'));
      expect(second.serverName.charAt(0)).toBe(first.serverName.charAt(0));
      await store.putFleet(fleetSpec('d', { scheduling: 'Distributed' }));
      await readyServer(store, 'da1', 'd', { node: 'a' });
      await readyServer(store, 'da2', 'd', { node: 'a' });
      await readyServer(store, 'db1', 'd', { node: 'b' });
      const d1 = await store.allocate(req('d1', 'd'));
      const d2 = await store.allocate(req('d2', 'd'));
      expect((await store.getServer(d1.serverName))?.node).not.toBe((await store.getServer(d2.serverName))?.node);
    });

    it('selects by the node recorded after launch (the controller records it once the process runs)', async () => {
      await readyServer(store, 'a1', 'f', { node: 'a' });
      await readyServer(store, 'x1', 'f', { node: 'z' });
      await store.allocate(req('c1')); // a1: the oldest
      const moved = await store.updateServer('x1', { node: 'a' });
      expect(moved.node).toBe('a');
      await readyServer(store, 'b1', 'f', { node: 'b' });
      // Packed: node a holds an allocation, so x1 (moved there) beats b1 (which would win over node z).
      expect((await store.allocate(req('c2'))).serverName).toBe('x1');
    });

    it('keeps the API host recorded after launch, apart from the media address', async () => {
      await readyServer(store, 's1', 'f');
      await store.updateServer('s1', { address: '203.0.113.7', apiHost: '10.1.2.3' });
      const s = await store.getServer('s1');
      expect(s).toMatchObject({ address: '203.0.113.7', apiHost: '10.1.2.3' });
      expect((await store.allocate(req('c1'))).address).toBe('203.0.113.7');
    });

    it('gives every allocation its own token', async () => {
      await readyServer(store, 's1', 'f');
      await readyServer(store, 's2', 'f');
      const a = await store.allocate(req('c1'));
      const b = await store.allocate(req('c2'));
      expect(a.token).not.toBe(b.token);
    });

    it('releases into Draining, and a second release is NOT_FOUND', async () => {
      await readyServer(store, 's1', 'f');
      await store.allocate(req('c1'));
      const released = await store.release('c1');
      expect(released.serverName).toBe('s1');
      expect(await store.getServer('s1')).toMatchObject({ state: 'Draining', compositionId: 'c1' });
      expect(await store.getAllocation('c1')).toBeUndefined();
      await expectCode(store.release('c1'), 'NOT_FOUND');
      const recycled = await store.updateServer('s1', { event: 'Recycle' });
      expect(recycled.state).toBe('Ready');
      expect(recycled.compositionId).toBeUndefined();
    });

    it('ends the allocation of a server that fails, and never removes an Allocated server', async () => {
      await readyServer(store, 's1', 'f');
      await store.allocate(req('c1'));
      await expectCode(store.removeServer('s1'), 'FAILED_PRECONDITION');
      await expectCode(store.updateServer('s1', { event: 'Shutdown' }), 'FAILED_PRECONDITION');
      await store.updateServer('s1', { event: 'Failed', reason: 'exit code 101' });
      expect(await store.getAllocation('c1')).toBeUndefined();
      await store.removeServer('s1');
      expect(await store.getServer('s1')).toBeUndefined();
    });

    it('never gives one server to two compositions under concurrency', async () => {
      for (let i = 0; i < 20; i++) await readyServer(store, `s${i}`, 'f');
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => store.allocate(req(`c${i}`))));
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as FleetError] : []));
      expect(ok).toHaveLength(20);
      expect(new Set(ok.map((a) => a.serverName)).size).toBe(20);
      expect(failed.every((e) => e.code === 'RESOURCE_EXHAUSTED')).toBe(true);
      expect(await store.listAllocations({ fleet: 'f' })).toHaveLength(20);
    });

    it('gives concurrent retries of one composition the same allocation', async () => {
      for (let i = 0; i < 5; i++) await readyServer(store, `s${i}`, 'f');
      const all = await Promise.all(Array.from({ length: 30 }, () => store.allocate(req('c1'))));
      expect(new Set(all.map((a) => `${a.serverName}/${a.token}`)).size).toBe(1);
      const allocated = (await store.listServers()).filter((s) => s.state === 'Allocated');
      expect(allocated.map((s) => s.name)).toEqual([all[0]!.serverName]);
      expect(await store.listAllocations()).toHaveLength(1);
    });

    it('feeds a server change after the allocation that ended it, in the order applied', async () => {
      await readyServer(store, 's1', 'f');
      await store.allocate(req('c1'));
      const ac = new AbortController();
      const seen = collect(store.watch(ac.signal), (events) => events.some((e) => e.type === 'server'));
      await store.updateServer('s1', { event: 'Failed', reason: 'exit code 101' });
      const events = await seen;
      ac.abort();
      expect(events.map((e) => e.type)).toEqual(['allocation', 'server']);
      expect(events[0]).toMatchObject({ type: 'allocation', released: true });
      expect(events[1]).toMatchObject({ type: 'server', server: { state: 'Error' } });
    });

    it('feeds changes to every watcher in order', async () => {
      const ac = new AbortController();
      const w1 = collect(store.watch(ac.signal), (seen) => seen.some((e) => e.type === 'allocation' && e.released));
      const w2 = collect(store.watch(ac.signal), (seen) => seen.some((e) => e.type === 'allocation' && e.released));
      await readyServer(store, 's1', 'f');
      await store.allocate(req('c1'));
      await store.release('c1');
      const [e1, e2] = await Promise.all([w1, w2]);
      ac.abort();
      const summary = (events: StoreEvent[]) =>
        events.map((e) =>
          e.type === 'server'
            ? `server:${e.server.state}`
            : e.type === 'allocation'
              ? `allocation:${e.released}`
              : e.type,
        );
      expect(summary(e1)).toEqual([
        'server:Starting',
        'server:Ready',
        'server:Allocated',
        'allocation:false',
        'server:Draining',
        'allocation:true',
      ]);
      expect(summary(e2)).toEqual(summary(e1));
    });

    it('keeps SDK annotations on the record', async () => {
      await store.addServer(newServer('s1', 'f'));
      expect((await store.getServer('s1'))?.annotations).toEqual({});
      const s = await store.updateServer('s1', { annotations: { 'sdk.smelterfleet.dev/a': 'x' } });
      expect(s.annotations).toEqual({ 'sdk.smelterfleet.dev/a': 'x' });
      expect((await store.getServer('s1'))?.annotations).toEqual({ 'sdk.smelterfleet.dev/a': 'x' });
    });

    it('marks a server Unhealthy when its lease runs out, and only then', async () => {
      await expectCode(store.renewLease('nobody', 1000), 'NOT_FOUND');
      await readyServer(store, 'kept', 'f');
      await readyServer(store, 'silent', 'f');
      const ac = new AbortController();
      const expired = collect(store.watch(ac.signal), (seen) =>
        seen.some((e) => e.type === 'server' && e.server.state === 'Unhealthy'),
      );
      // A short lease renewed with a long one must not expire at the short one's time.
      await store.renewLease('kept', 30);
      await store.renewLease('kept', 60_000);
      await store.renewLease('silent', 150);
      const events = await expired;
      ac.abort();
      const unhealthy = events.filter((e) => e.type === 'server' && e.server.state === 'Unhealthy');
      expect(unhealthy.map((e) => e.type === 'server' && e.server.name)).toEqual(['silent']);
      expect((await store.getServer('silent'))?.reason).toMatch(/lease/);
      expect((await store.getServer('kept'))?.state).toBe('Ready');
    });

    it('ends a watch when its signal aborts', async () => {
      const ac = new AbortController();
      const done = collect(store.watch(ac.signal), () => false);
      ac.abort();
      expect(await done).toEqual([]);
    });
  });
}
