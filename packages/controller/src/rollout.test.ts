import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import {
  linkToken,
  MemoryEventRecorder,
  TEMPLATE_HASH_LABEL,
  templateHash,
  type FleetEvent,
  type FleetSpec,
  type ServerRecord,
} from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { alive, cliBinPath, fleetSpec, untilServers as until } from '@smelter-fleet/testing';
import { FleetController } from './controller.js';
import { ControllerMetrics } from './metrics.js';

jest.setTimeout(60_000);

const inState = (servers: ServerRecord[], state: string) => servers.filter((s) => s.state === state);
const hashOf = (s: ServerRecord) => s.labels[TEMPLATE_HASH_LABEL];

/** Resolves with the first event (recorded already or later) that matches. */
function untilEvent(events: MemoryEventRecorder, match: (e: FleetEvent) => boolean): Promise<FleetEvent> {
  return new Promise((resolve) => {
    const past = events.list().find(match);
    if (past) return resolve(past);
    const off = events.subscribe((e) => {
      if (!match(e)) return;
      off();
      resolve(e);
    });
  });
}

/** Every state every server went through, from the store's change feed. */
function recordHistory(store: MemoryStore, signal: AbortSignal) {
  const history = new Map<string, string[]>();
  const hashes = new Map<string, string | undefined>();
  const snapshots: Map<string, ServerRecord>[] = [];
  /** `name state` in the order the store applied the changes. */
  const log: string[] = [];
  const now = new Map<string, ServerRecord>();
  const changes = store.watch(signal);
  void (async () => {
    for (const s of await store.listServers()) {
      now.set(s.name, s);
      history.set(s.name, [s.state]);
      hashes.set(s.name, hashOf(s));
    }
    for await (const e of changes) {
      if (e.type !== 'server') continue;
      hashes.set(e.server.name, hashOf(e.server));
      log.push(`${e.server.name} ${e.removed ? 'removed' : e.server.state}`);
      const states = history.get(e.server.name) ?? [];
      if (e.removed) {
        now.delete(e.server.name);
        states.push('removed');
      } else {
        now.set(e.server.name, e.server);
        if (states.at(-1) !== e.server.state) states.push(e.server.state);
      }
      history.set(e.server.name, states);
      snapshots.push(new Map(now));
    }
  })();
  return { history, hashes, snapshots, log };
}

describe('FleetController rollouts, drains and restarts over emulator processes', () => {
  let store: MemoryStore;
  let allocator: AllocatorServer;
  let runtime: ProcessRuntime;
  let events: MemoryEventRecorder;
  let metrics: ControllerMetrics;
  let stop: AbortController;
  let running: Promise<void> | undefined;

  const controller = (overrides: { stopServersOnExit?: boolean } = {}) =>
    new FleetController({ store, runtime, events, metrics, stopGraceMs: 2000, ...overrides });

  async function startFleet(spec: FleetSpec): Promise<ServerRecord[]> {
    await store.putFleet(spec);
    running = controller().run(stop.signal);
    return until(store, (s) => inState(s, 'Ready').length === spec.replicas);
  }

  beforeEach(async () => {
    store = new MemoryStore();
    allocator = await startAllocatorServer({ store, linkSecret: 'test-secret' });
    runtime = new ProcessRuntime({
      defaultCommand: [process.execPath, emulatorMainPath],
      stopGraceMs: 2000,
      sidecar: {
        command: [process.execPath, cliBinPath, 'supervise', '--log-level', 'warn'],
        link: allocator.address,
        linkToken: (name) => linkToken('test-secret', name),
      },
    });
    events = new MemoryEventRecorder();
    metrics = new ControllerMetrics();
    stop = new AbortController();
    running = undefined;
  });

  afterEach(async () => {
    stop.abort();
    await running;
    await runtime.close();
    await allocator.close({ force: true });
    await store.close();
  });

  it('rolls out a new template with an allocated server: its composition is never cut, new servers are Ready first', async () => {
    const v1 = fleetSpec('f', {
      replicas: 3,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
    });
    const before = await startFleet(v1);
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const held = before.find((s) => s.name === a.serverName)!;
    const watch = new AbortController();
    const { history, snapshots } = recordHistory(store, watch.signal);

    const v2 = { ...v1, template: { ...v1.template, env: { SMELTER_OUTPUT_FRAMERATE: '25' } } };
    const newHash = templateHash(v2.template);
    await store.putFleet(v2);
    const rolled = await until(
      store,
      (s) => s.filter((x) => x.state === 'Ready' && hashOf(x) === newHash).length === 2 && s.length === 3,
    );
    // The allocated server is Draining (takes no new composition), alive, still holding c1.
    expect(rolled.find((s) => s.name === held.name)).toMatchObject({ state: 'Draining', compositionId: 'c1' });
    expect(alive(held.pid!)).toBe(true);
    expect(await store.getAllocation('c1')).toMatchObject({ serverName: held.name });
    // Old Ready servers went only while 2 servers (the warm pool minus maxUnavailable 0) stayed Ready,
    // so a new one was Ready before each old one stopped.
    for (const snap of snapshots) {
      const ready = [...snap.values()].filter((s) => s.state === 'Ready').length;
      expect(ready).toBeGreaterThanOrEqual(2);
    }
    for (const old of before.filter((s) => s.name !== held.name))
      expect(history.get(old.name)).toEqual(['Ready', 'Shutdown', 'removed']);
    expect(events.list().map((e) => e.reason)).toEqual(expect.arrayContaining(['Draining', 'RolloutProgress']));

    // The composition ends: the outdated server stops (it is not recycled) and a new one takes its place.
    await store.release('c1');
    const done = await until(
      store,
      (s) => s.length === 3 && s.every((x) => x.state === 'Ready' && hashOf(x) === newHash),
    );
    expect(done.map((s) => s.name)).not.toContain(held.name);
    expect(history.get(held.name)).toEqual(['Allocated', 'Draining', 'Shutdown', 'removed']);
    expect(alive(held.pid!)).toBe(false);
    await untilEvent(events, (e) => e.reason === 'RolloutComplete');
    watch.abort();
  });

  it('recreates: old Ready servers stop at once, new ones start after them, the allocated one drains', async () => {
    const v1 = fleetSpec('f', {
      replicas: 3,
      strategy: { type: 'Recreate', rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } },
    });
    const before = await startFleet(v1);
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const watch = new AbortController();
    const { history, hashes, log } = recordHistory(store, watch.signal);
    const v2 = { ...v1, template: { ...v1.template, env: { X: 'v2' } } };
    const newHash = templateHash(v2.template);
    await store.putFleet(v2);
    const rolled = await until(
      store,
      (s) => s.filter((x) => x.state === 'Ready' && hashOf(x) === newHash).length === 2 && s.length === 3,
    );
    expect(rolled.find((s) => s.name === a.serverName)).toMatchObject({ state: 'Draining', compositionId: 'c1' });
    const olds = before.filter((s) => s.name !== a.serverName).map((s) => s.name);
    for (const old of olds) expect(history.get(old)).toEqual(['Ready', 'Shutdown', 'removed']);
    // No new server was recorded before every old Ready one was stopped.
    const firstNew = log.findIndex((line) => hashes.get(line.split(' ')[0]!) === newHash);
    const lastOldStop = Math.max(...olds.map((n) => log.indexOf(`${n} Shutdown`)));
    expect(lastOldStop).toBeGreaterThanOrEqual(0);
    expect(firstNew).toBeGreaterThan(lastOldStop);
    watch.abort();
  });

  it('scales down a fleet of mixed states: only warm servers go', async () => {
    const spec = fleetSpec('f', {
      replicas: 4,
      // A released server stays Draining (flushing) for a while.
      drain: { onRelease: 'Recycle', flushTimeMs: 30_000, maxDrainTimeMs: 60_000 },
    });
    await startFleet(spec);
    const a1 = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const a2 = await store.allocate({ fleet: 'f', compositionId: 'c2', matchLabels: {}, metadata: {} });
    await store.release('c2');
    await store.putFleet({ ...spec, replicas: 1 });
    // 2 in use (Allocated + Draining) >= 1 wanted: both Ready servers go, nothing else.
    const left = await until(store, (s) => s.length === 2);
    expect(left.map((s) => [s.name, s.state]).sort()).toEqual(
      [
        [a1.serverName, 'Allocated'],
        [a2.serverName, 'Draining'],
      ].sort(),
    );
    expect(left.every((s) => alive(s.pid!))).toBe(true);
    expect(events.list()).toContainEqual(
      expect.objectContaining({ reason: 'ScaledDown', message: 'stopping 2 surplus server(s) (replicas 1)' }),
    );
    expect((await metrics.stopped.get()).values).toContainEqual(
      expect.objectContaining({ labels: { fleet: 'f', why: 'surplus' }, value: 2 }),
    );
  });

  it('enforces the max drain time visibly: event and metric (the log line: controller.test.ts)', async () => {
    await startFleet(
      fleetSpec('f', { replicas: 1, drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 300 } }),
    );
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    await store.updateServer(a.serverName, { event: 'Drain' });
    const e = await untilEvent(events, (x) => x.reason === 'DrainTimeout');
    expect(e).toMatchObject({
      type: 'Warning',
      object: `server/${a.serverName}`,
      message: 'still Draining after the max drain time (300ms); stopped with composition c1',
    });
    expect((await metrics.drainTimeouts.get()).values).toEqual([{ labels: { fleet: 'f' }, value: 1 }]);
    expect(await metrics.registry.metrics()).toMatch(/^smelter_fleet_drain_timeouts_total\{fleet="f"\} 1$/m);
    await until(store, (s) => s.length === 1 && s[0]!.name !== a.serverName && s[0]!.state === 'Ready');
  });

  const killPoints: [string, (newHash: string) => (servers: ServerRecord[]) => boolean][] = [
    ['its first new server is recorded', (h) => (s) => s.some((x) => hashOf(x) === h)],
    ['its first new server is Ready', (h) => (s) => s.some((x) => hashOf(x) === h && x.state === 'Ready')],
    ['it is stopping an old Ready server', (h) => (s) => s.some((x) => hashOf(x) !== h && x.state === 'Shutdown')],
  ];
  it.each(killPoints)(
    'survives being killed mid-rollout when %s: the next controller finishes it, nothing lost or launched twice',
    async (_, killWhen) => {
      const v1 = fleetSpec('f', {
        replicas: 3,
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      });
      await store.putFleet(v1);
      const first = new AbortController();
      const killed = controller({ stopServersOnExit: false }).run(first.signal);
      await until(store, (s) => inState(s, 'Ready').length === 3);
      const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
      const watch = new AbortController();
      const { hashes } = recordHistory(store, watch.signal);
      const v2 = { ...v1, template: { ...v1.template, env: { X: 'v2' } } };
      const newHash = templateHash(v2.template);
      await store.putFleet(v2);
      // Killed (no orderly shutdown) at that moment.
      await until(store, killWhen(newHash));
      first.abort();
      await killed;
      // Servers kept running and kept their records.
      const mid = await store.listServers();
      expect(await store.getAllocation('c1')).toMatchObject({ serverName: a.serverName });
      for (const s of mid) if (s.pid && s.state !== 'Shutdown') expect(alive(s.pid)).toBe(true);

      running = controller().run(stop.signal);
      const rolled = await until(
        store,
        (s) => s.filter((x) => x.state === 'Ready' && hashOf(x) === newHash).length === 2 && s.length === 3,
      );
      expect(rolled.find((s) => s.name === a.serverName)).toMatchObject({ state: 'Draining', compositionId: 'c1' });
      // Exactly the two new servers the rollout needs were ever created, and each runs one process.
      expect([...hashes.values()].filter((h) => h === newHash)).toHaveLength(2);
      expect(
        runtime
          .list()
          .map((p) => p.name)
          .sort(),
      ).toEqual(rolled.map((s) => s.name).sort());
      watch.abort();
    },
  );

  it('adopts what a dead controller left: a record without a process gets one, a process without a record stops', async () => {
    const spec = fleetSpec('f', { replicas: 2 });
    await store.putFleet(spec);
    // Recorded, never launched (the controller died in between).
    await store.addServer({
      name: 'f-recorded',
      fleet: 'f',
      region: 'local',
      address: '',
      ports: { api: 0, whip_whep: 0, rtmp: 0 },
      labels: { [TEMPLATE_HASH_LABEL]: templateHash(spec.template) },
      node: '',
    });
    // Launched, never recorded (or its record was lost).
    const orphan = await runtime.start({ name: 'f-orphan', fleet: 'f', command: [], env: {} });
    const orphanExit = new Promise<void>((resolve) =>
      runtime.onExit((e) => {
        if (e.name === 'f-orphan') resolve();
      }),
    );
    running = controller().run(stop.signal);
    const ready = await until(store, (s) => inState(s, 'Ready').length === 2);
    expect(ready.map((s) => s.name)).toContain('f-recorded');
    expect(ready.find((s) => s.name === 'f-recorded')!.address).toBe('127.0.0.1');
    await orphanExit;
    expect(alive(orphan.pid!)).toBe(false);
    expect(
      runtime
        .list()
        .map((p) => p.name)
        .sort(),
    ).toEqual(ready.map((s) => s.name).sort());
  });
});
