import { describe, expect, it } from '@jest/globals';
import type { FleetStrategy, ServerState } from '@smelter-fleet/core';
import { planFleet, retirementOrder, type PlanInput, type PlanServer } from './plan.js';

let seq = 0;
function server(state: ServerState, overrides: Partial<PlanServer> = {}): PlanServer {
  seq++;
  return {
    name: `s${seq}`,
    state,
    node: 'n1',
    createdAt: seq,
    current: true,
    hasComposition: state === 'Allocated' || state === 'Draining',
    busy: false,
    ...overrides,
  };
}
const old = (state: ServerState, o: Partial<PlanServer> = {}) => server(state, { current: false, ...o });
const rolling = (maxSurge: number | string, maxUnavailable: number | string): FleetStrategy => ({
  type: 'RollingUpdate',
  rollingUpdate: { maxSurge, maxUnavailable },
});
const plan = (input: Partial<PlanInput> & { servers: PlanServer[] }) =>
  planFleet({ replicas: 3, scheduling: 'Packed', ...input });
const names = (p: { stop: { name: string }[] }) => p.stop.map((s) => s.name);

describe('planFleet: scaling', () => {
  it('launches up to replicas, counting Starting, Ready, Allocated and Draining ones', () => {
    expect(plan({ servers: [] }).launch).toBe(3);
    const servers = [server('Starting'), server('Allocated'), server('Unhealthy'), server('Error'), server('Shutdown')];
    expect(plan({ servers })).toMatchObject({ launch: 1, stop: [], drain: [] });
    expect(plan({ replicas: 2, servers: [server('Draining'), server('Ready')] }).launch).toBe(0);
  });

  it('scales down a mixed fleet: Starting first, then Ready; never Allocated or Draining', () => {
    const allocated = [server('Allocated'), server('Allocated')];
    const draining = server('Draining');
    const ready = [server('Ready'), server('Ready')];
    const starting = server('Starting');
    const p = plan({ replicas: 4, servers: [...allocated, draining, ...ready, starting] });
    // 3 in use, so 1 warm is wanted: the Starting one goes, then the newest Ready.
    expect(p.status).toMatchObject({ inUse: 3, warmTarget: 1 });
    expect(p.stop).toEqual([
      { name: starting.name, why: 'surplus' },
      { name: ready[1]!.name, why: 'surplus' },
    ]);
    expect(p.launch).toBe(0);
    // Asked for fewer than the in-use count: every warm server goes, no in-use one.
    const zero = plan({ replicas: 0, servers: [...allocated, draining, ...ready, starting] });
    expect(names(zero).sort()).toEqual([starting.name, ...ready.map((s) => s.name)].sort());
    expect(zero.drain).toEqual([]);
  });

  it('stops a Draining server that holds no composition (drained while Ready) and replaces it', () => {
    const drained = server('Draining', { hasComposition: false });
    const p = plan({ replicas: 2, servers: [drained, server('Ready')] });
    expect(p.stop).toEqual([{ name: drained.name, why: 'drained' }]);
    expect(p.launch).toBe(1);
  });

  it('never picks a busy server', () => {
    const busy = server('Ready', { busy: true, createdAt: 1e9 });
    const other = server('Ready');
    expect(names(plan({ replicas: 1, servers: [busy, other] }))).toEqual([other.name]);
    expect(plan({ replicas: 0, servers: [server('Draining', { hasComposition: false, busy: true })] }).stop).toEqual(
      [],
    );
  });
});

describe('retirementOrder', () => {
  // Node a: 3 servers (1 Allocated, 2 Ready); node b: 1 Ready; node c: 2 Ready.
  const a = [server('Allocated', { node: 'a' }), server('Ready', { node: 'a' }), server('Ready', { node: 'a' })];
  const b = [server('Ready', { node: 'b' })];
  const c = [server('Ready', { node: 'c' }), server('Ready', { node: 'c' })];
  const live = [...a, ...b, ...c];
  const ready = live.filter((s) => s.state === 'Ready');

  it('Packed: emptiest nodes first, newest first within a node', () => {
    expect(retirementOrder(ready, live, 'Packed').map((s) => s.name)).toEqual([
      b[0]!.name,
      c[1]!.name,
      c[0]!.name,
      a[2]!.name,
      a[1]!.name,
    ]);
  });

  it('Distributed: the fullest node at each step', () => {
    // a=3 -> take a (2 left), then a and c tie at 2 (a first by name), then c=2, then b/c tie at 1...
    expect(retirementOrder(ready, live, 'Distributed').map((s) => s.node)).toEqual(['a', 'a', 'c', 'b', 'c']);
  });

  it('puts Starting servers first, newest first', () => {
    const s1 = server('Starting');
    const s2 = server('Starting');
    expect(retirementOrder([...ready, s1, s2], [...live, s1, s2], 'Packed').slice(0, 2)).toEqual([s2, s1]);
  });

  it('scale-down uses it: Packed frees the emptiest node', () => {
    const p = plan({ replicas: live.length - 1, servers: live });
    expect(p.stop).toEqual([{ name: b[0]!.name, why: 'surplus' }]);
  });
});

describe('planFleet: rolling update', () => {
  it('starts new servers first within maxSurge and retires old Ready within maxUnavailable', () => {
    const olds = [old('Ready'), old('Ready'), old('Ready'), old('Ready')];
    const p = plan({ replicas: 4, strategy: rolling('25%', '25%'), servers: olds });
    expect(p.status).toMatchObject({ maxSurge: 1, maxUnavailable: 1, outdated: 4, updated: 0, rolloutComplete: false });
    expect(p.launch).toBe(1);
    expect(p.stop).toEqual([{ name: olds[3]!.name, why: 'outdated' }]);
  });

  it('with maxUnavailable 0 waits for a new server to be Ready before retiring an old one (Agones #1625)', () => {
    const olds = [old('Ready'), old('Ready')];
    const first = plan({ replicas: 2, strategy: rolling(1, 0), servers: olds });
    expect(first).toMatchObject({ launch: 1, stop: [] });
    const starting = plan({ replicas: 2, strategy: rolling(1, 0), servers: [...olds, server('Starting')] });
    expect(starting).toMatchObject({ launch: 0, stop: [] });
    const ready = plan({ replicas: 2, strategy: rolling(1, 0), servers: [...olds, server('Ready')] });
    expect(ready.launch).toBe(0);
    expect(ready.stop).toHaveLength(1);
  });

  it('drains outdated Allocated servers at once; they never block new ones (Agones #3970)', () => {
    const allocated = [old('Allocated'), old('Allocated'), old('Allocated')];
    const p = plan({ replicas: 4, strategy: rolling(0, 1), servers: [...allocated, old('Ready')] });
    expect(p.drain.sort()).toEqual(allocated.map((s) => s.name).sort());
    // One warm server wanted: the old Ready one may go (maxUnavailable 1), and a new one starts at once.
    expect(p.launch).toBe(0);
    expect(p.stop).toHaveLength(1);
    const next = plan({
      replicas: 4,
      strategy: rolling(0, 1),
      servers: allocated.map((s) => ({ ...s, state: 'Draining' })),
    });
    expect(next).toMatchObject({ launch: 1, stop: [], drain: [] });
    expect(next.status).toMatchObject({ inUse: 3, warmTarget: 1, outdated: 3 });
  });

  it('resolves percentages against the warm pool, not replicas (Agones #3688)', () => {
    const servers = [
      ...Array.from({ length: 90 }, () => old('Allocated')),
      ...Array.from({ length: 10 }, () => old('Ready')),
    ];
    const p = plan({ replicas: 100, strategy: rolling('10%', '10%'), servers });
    expect(p.status).toMatchObject({ warmTarget: 10, maxSurge: 1, maxUnavailable: 1 });
    expect(p.stop).toHaveLength(1);
    expect(p.launch).toBe(1);
  });

  it('treats old warm servers as surplus once new ones fill the pool (replicas lowered mid-rollout)', () => {
    const news = [server('Ready'), server('Ready')];
    const olds = [old('Ready'), old('Starting')];
    const p = plan({ replicas: 1, servers: [...news, ...olds] });
    expect(
      p.stop
        .filter((s) => s.why === 'outdated')
        .map((s) => s.name)
        .sort(),
    ).toEqual(olds.map((s) => s.name).sort());
    expect(p.stop.filter((s) => s.why === 'surplus')).toEqual([{ name: news[1]!.name, why: 'surplus' }]);
  });

  it('stops old servers still starting first', () => {
    const starting = old('Starting');
    const p = plan({ replicas: 2, strategy: rolling(1, 0), servers: [starting, old('Ready')] });
    expect(p.stop).toEqual([{ name: starting.name, why: 'outdated' }]);
    expect(p.launch).toBe(2); // the old Ready one + 2 new = 2 + maxSurge 1
  });

  // Runs the planner as the controller does, pass after pass (launched servers Start, then become Ready;
  // stopped ones go; compositions end one per pass), and checks the bounds at every step.
  it.each([
    [4, 0, 1, 0],
    [4, 0, 0, 1],
    [4, 2, 1, 1],
    [5, 5, '25%', '25%'],
    [6, 3, 2, 0],
    [1, 0, '25%', '25%'],
    [3, 1, 0, 1],
    [10, 4, '50%', '0%'],
  ] as const)(
    'completes replicas=%d allocated=%d surge=%s unavailable=%s within bounds',
    (replicas, allocated, surge, unavail) => {
      const strategy = rolling(surge, unavail);
      let servers: PlanServer[] = [
        ...Array.from({ length: allocated }, () => old('Allocated')),
        ...Array.from({ length: replicas - allocated }, () => old('Ready')),
      ];
      for (let pass = 0; pass < 100; pass++) {
        const p = plan({ replicas, strategy, servers });
        const { warmTarget, maxSurge, maxUnavailable } = p.status;
        const stopped = new Set(names(p));
        const readyBefore = servers.filter((s) => s.state === 'Ready').length;
        // Never an in-use server stopped.
        for (const s of servers) if (stopped.has(s.name)) expect(['Starting', 'Ready']).toContain(s.state);
        servers = servers
          .filter((s) => !stopped.has(s.name))
          .map((s) => (p.drain.includes(s.name) ? { ...s, state: 'Draining' as const } : s));
        const ready = servers.filter((s) => s.state === 'Ready').length;
        const warm = servers.filter((s) => s.state === 'Ready' || s.state === 'Starting').length;
        // Never below the pool minus maxUnavailable because of the planner (it may start lower: a pool that just grew).
        expect(ready).toBeGreaterThanOrEqual(Math.min(readyBefore, warmTarget - maxUnavailable));
        expect(warm + p.launch).toBeLessThanOrEqual(warmTarget + maxSurge);
        // Next pass: Starting -> Ready, new ones Starting, one composition ends.
        servers = servers.map((s) => (s.state === 'Starting' ? { ...s, state: 'Ready' as const } : s));
        servers.push(...Array.from({ length: p.launch }, () => server('Starting')));
        const ending = servers.findIndex((s) => s.state === 'Draining');
        if (ending >= 0 && pass % 2 === 1) servers.splice(ending, 1);
        if (
          p.status.rolloutComplete &&
          p.launch === 0 &&
          p.stop.length === 0 &&
          servers.every((s) => s.state !== 'Starting')
        )
          break;
      }
      expect(servers.every((s) => s.current)).toBe(true);
      expect(servers.filter((s) => s.state === 'Ready')).toHaveLength(replicas);
    },
  );
});

describe('planFleet: recreate', () => {
  const recreate: FleetStrategy = { type: 'Recreate', rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } };

  it('stops every old warm server at once, drains old Allocated ones, and launches once they are gone', () => {
    const olds = [old('Ready'), old('Starting'), old('Ready')];
    const allocated = old('Allocated');
    const p = plan({ replicas: 4, strategy: recreate, servers: [...olds, allocated] });
    expect(names(p).sort()).toEqual(olds.map((s) => s.name).sort());
    expect(p.drain).toEqual([allocated.name]);
    expect(p.launch).toBe(0);
    const next = plan({ replicas: 4, strategy: recreate, servers: [{ ...allocated, state: 'Draining' }] });
    expect(next).toMatchObject({ launch: 3, stop: [], drain: [] });
  });
});
