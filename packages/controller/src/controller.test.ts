import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import { linkToken, type FleetSpec, type ServerRecord } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { alive, cliBinPath, fleetSpec, recordingLogger, untilServers as until } from '@smelter-fleet/testing';
import { FleetController } from './controller.js';

jest.setTimeout(30_000);

const inState = (servers: ServerRecord[], state: string) => servers.filter((s) => s.state === state);
const smelter = (s: ServerRecord, path: string, body?: unknown) =>
  fetch(`http://${s.address}:${s.ports.api}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });

describe('FleetController with emulator processes under their sidecars', () => {
  let store: MemoryStore;
  let allocator: AllocatorServer;
  let runtime: ProcessRuntime;
  let logger: ReturnType<typeof recordingLogger>;
  let stop: AbortController;
  let running: Promise<void>;

  async function startFleet(overrides: Partial<FleetSpec> = {}) {
    // Failure threshold 10: 100 ms polls are missed on a loaded machine; tests of health failures set their own.
    const health = { ...fleetSpec('f').health, failureThreshold: 10 };
    await store.putFleet(fleetSpec('f', { replicas: 2, health, ...overrides }));
    running = new FleetController({ store, runtime, logger, stopGraceMs: 2000 }).run(stop.signal);
    return until(store, (s) => inState(s, 'Ready').length === (overrides.replicas ?? 2));
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
    logger = recordingLogger();
    stop = new AbortController();
  });

  afterEach(async () => {
    stop.abort();
    await running;
    expect(runtime.list()).toEqual([]);
    expect(await store.listServers()).toEqual([]);
    await allocator.close({ force: true });
  });

  it('brings the fleet to size and scales down without touching Allocated servers', async () => {
    const ready = await startFleet({ replicas: 3 });
    expect(ready.every((s) => s.pid && alive(s.pid))).toBe(true);
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    await store.putFleet(fleetSpec('f', { replicas: 0 }));
    const left = await until(store, (s) => s.length === 1);
    expect(left).toEqual([expect.objectContaining({ name: a.serverName, state: 'Allocated' })]);
    const stoppedPids = ready.filter((s) => s.name !== a.serverName).map((s) => s.pid!);
    expect(stoppedPids.filter(alive)).toEqual([]);
    // Once released it drains and goes too, since the fleet wants none.
    await store.release('c1');
    await until(store, (s) => s.length === 0);
  });

  it('recycles a released server with POST /api/reset', async () => {
    await startFleet({ replicas: 1 });
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const server = (await store.getServer(a.serverName))!;
    const registered = await smelter(server, '/api/output/out1/register', {
      type: 'mp4',
      path: '/tmp/out.mp4',
      video: {
        resolution: { width: 640, height: 360 },
        encoder: { type: 'ffmpeg_h264' },
        initial: { root: { type: 'view' } },
      },
    });
    expect(registered.status).toBe(200);
    await store.release('c1');
    const [back] = await until(store, (s) => inState(s, 'Ready').length === 1);
    expect(back).toMatchObject({ name: server.name, pid: server.pid });
    expect(back!.compositionId).toBeUndefined();
    const status = (await (await smelter(back!, '/status')).json()) as { outputs: unknown[] };
    expect(status.outputs).toEqual([]);
  });

  it('replaces a released server when the fleet says Replace', async () => {
    const [first] = await startFleet({
      replicas: 1,
      drain: { onRelease: 'Replace', flushTimeMs: 0, maxDrainTimeMs: 60_000 },
    });
    await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    await store.release('c1');
    const [next] = await until(store, (s) => inState(s, 'Ready').length === 1 && s[0]?.name !== first!.name);
    expect(next!.name).not.toBe(first!.name);
    expect(alive(first!.pid!)).toBe(false);
  });

  it('replaces a crashed Smelter and ends its allocation', async () => {
    await startFleet({ replicas: 2 });
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const victim = (await store.getServer(a.serverName))!;
    const seen = until(store, (s) => s.some((x) => x.name === victim.name && x.state === 'Unhealthy'));
    await smelter(victim, '/_emulator/crash', {}).catch(() => undefined);
    const unhealthy = (await seen).find((x) => x.name === victim.name)!;
    // The sidecar saw it first (the socket closed, the port refused), before the process exit was noticed.
    expect(unhealthy.reason).toMatch(/refused|exited with code 101/);
    const after = await until(store, (s) => !s.some((x) => x.name === victim.name) && inState(s, 'Ready').length === 2);
    expect(after).toHaveLength(2);
    expect(await store.getAllocation('c1')).toBeUndefined();
    expect(alive(victim.pid!)).toBe(false);
  });

  it('replaces a server whose sidecar was killed, leaving no Smelter behind', async () => {
    await startFleet({ replicas: 1 });
    const [victim] = await store.listServers();
    process.kill(victim!.pid!, 'SIGKILL');
    await until(store, (s) => s.length === 1 && s[0]!.name !== victim!.name && s[0]!.state === 'Ready');
    // Its Smelter (a child of the sidecar) went with it: its API port is closed.
    await expect(smelter(victim!, '/status')).rejects.toThrow();
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'server process ended unexpectedly',
        fields: expect.objectContaining({ how: 'killed by SIGKILL' }),
      }),
    );
  });

  it('marks a server whose sidecar goes silent Unhealthy when its lease runs out', async () => {
    const [frozen] = await startFleet({ replicas: 1, health: { ...fleetSpec('f').health, leaseTimeoutMs: 600 } });
    process.kill(frozen!.pid!, 'SIGSTOP'); // alive but silent: no heartbeat, no exit
    const seen = await until(store, (s) => s.some((x) => x.name === frozen!.name && x.state === 'Unhealthy'));
    expect(seen.find((x) => x.name === frozen!.name)?.reason).toBe('sidecar silent for 600 ms (lease expired)');
    await until(store, (s) => s.length === 1 && s[0]!.name !== frozen!.name && s[0]!.state === 'Ready');
  });

  it('marks a hung server Unhealthy after the failure threshold and replaces it', async () => {
    const [hung] = await startFleet({
      replicas: 1,
      health: { ...fleetSpec('f').health, periodMs: 100, failureThreshold: 2 },
    });
    expect((await smelter(hung!, '/_emulator/hang', {})).status).toBe(200);
    const unhealthy = await until(store, (s) => s.some((x) => x.name === hung!.name && x.state === 'Unhealthy'));
    expect(unhealthy.find((x) => x.name === hung!.name)?.reason).toBe(
      '2 failed health checks in a row: GET /status: no answer within 100 ms',
    );
    await until(store, (s) => !s.some((x) => x.name === hung!.name) && inState(s, 'Ready').length === 1);
  });

  it('gives up on a server that never answers within the startup timeout', async () => {
    await store.putFleet(
      fleetSpec('f', {
        replicas: 1,
        template: { labels: {}, command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'], env: {} },
        health: { ...fleetSpec('f').health, startupTimeoutMs: 300, periodMs: 50, failureThreshold: 1 },
      }),
    );
    running = new FleetController({ store, runtime, logger, stopGraceMs: 500 }).run(stop.signal);
    const seen = await until(store, (s) => s.some((x) => x.state === 'Unhealthy'));
    expect(inState(seen, 'Unhealthy')[0]?.reason).toBe('not Ready within 300 ms of launch');
    // And it keeps trying with fresh servers.
    const first = inState(seen, 'Unhealthy')[0]!.name;
    await until(store, (s) => s.some((x) => x.name !== first && x.state === 'Starting'));
  });

  it('stops a draining server when the max drain time runs out, visibly', async () => {
    await startFleet({ replicas: 1, drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 200 } });
    const a = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    await store.updateServer(a.serverName, { event: 'Drain' });
    await until(store, (s) => !s.some((x) => x.name === a.serverName));
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: 'max drain time exceeded; stopping server',
        fields: expect.objectContaining({ server: a.serverName }),
      }),
    );
  });
});
