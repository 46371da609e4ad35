import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import {
  DRAIN_REQUESTED_ANNOTATION,
  MemoryEventRecorder,
  TEMPLATE_HASH_LABEL,
  templateHash,
  type FleetSpec,
} from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetV1 } from '@smelter-fleet/proto';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import { ClientError, Status } from 'nice-grpc';
import { connectAllocator, type AllocatorClients } from './client.js';
import { startAllocatorServer, type AllocatorServer } from './server.js';
import { DEFAULT_APPLY_HANDLERS } from './services.js';

async function grpcError(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error('expected a gRPC error');
}

const manifest = (name: string, spec: string) => `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata:
  name: ${name}
spec:
${spec}`;

describe('FleetService: ApplyFleet, DrainServers, ListEvents', () => {
  let store: MemoryStore;
  let server: AllocatorServer;
  let clients: AllocatorClients;
  let events: MemoryEventRecorder;

  beforeEach(async () => {
    store = new MemoryStore();
    events = new MemoryEventRecorder();
    await store.putFleet(fleetSpec('f'));
    server = await startAllocatorServer({
      store,
      events,
      applyHandlers: {
        ...DEFAULT_APPLY_HANDLERS,
        // A second kind plugged in by a caller, as the autoscaler does.
        Note: {
          parse: (doc) => {
            const name = (doc as { name?: unknown }).name;
            if (typeof name !== 'string') throw new Error('unreachable in these tests');
            return { name };
          },
          apply: async () => ({ result: 'unchanged', message: 'noted' }),
        },
      },
    });
    clients = connectAllocator(server.address);
  });

  afterEach(async () => {
    clients.close();
    await server.close({ force: true });
    await store.close();
  });

  it('creates, scales, rolls out and reports unchanged', async () => {
    const created = await clients.fleet.applyFleet({ manifest: manifest('g', '  replicas: 2\n'), fileName: 'g.yaml' });
    expect(created.objects).toEqual([expect.objectContaining({ kind: 'SmelterFleet', name: 'g', result: 'created' })]);
    const g = (await store.getFleet('g'))!;
    expect(g.replicas).toBe(2);

    const again = await clients.fleet.applyFleet({ manifest: manifest('g', '  replicas: 2\n'), fileName: 'g.yaml' });
    expect(again.objects[0]).toMatchObject({ result: 'unchanged' });

    const text = manifest('g', '  replicas: 5\n  template:\n    spec:\n      env: { A: "1" }\n');
    const dry = await clients.fleet.applyFleet({ manifest: text, fileName: 'g.yaml', dryRun: true });
    expect(dry.objects[0]).toMatchObject({ result: 'configured' });
    expect((await store.getFleet('g'))!.replicas).toBe(2);

    const changed = await clients.fleet.applyFleet({ manifest: text, fileName: 'g.yaml' });
    const newHash = templateHash((await store.getFleet('g'))!.template);
    expect(changed.objects[0]).toMatchObject({
      result: 'configured',
      message: `replicas 2 -> 5; template ${templateHash(g.template)} -> ${newHash} (RollingUpdate)`,
    });
  });

  it('keeps the live replicas when the document leaves them out (an autoscaler owns them)', async () => {
    await store.putFleet({ ...fleetSpec('f'), replicas: 7 });
    const res = await clients.fleet.applyFleet({
      manifest: manifest('f', '  drain: { maxDrainTime: 1h }\n'),
      fileName: 'f.yaml',
    });
    expect(res.objects[0]).toMatchObject({ result: 'configured', message: 'policy' });
    const f = (await store.getFleet('f'))!;
    expect(f.replicas).toBe(7);
    expect(f.drain.maxDrainTimeMs).toBe(3_600_000);
  });

  it('applies documents of every registered kind, and none when one is invalid', async () => {
    const both = `${manifest('h', '  replicas: 1\n')}---\nkind: Note\nname: n1\n`;
    const res = await clients.fleet.applyFleet({ manifest: both, fileName: 'both.yaml' });
    expect(res.objects.map((o) => [o.kind, o.name, o.result])).toEqual([
      ['SmelterFleet', 'h', 'created'],
      ['Note', 'n1', 'unchanged'],
    ]);
    const bad = `${manifest('k', '  replicas: 1\n')}---\n${manifest('k2', '  replicas: -1\n')}`;
    const e = await grpcError(clients.fleet.applyFleet({ manifest: bad, fileName: 'bad.yaml' }));
    expect(e.code).toBe(Status.INVALID_ARGUMENT);
    expect(e.details).toBe(
      'manifest: bad.yaml:13:13: [document 2] spec.replicas: must be an integer from 0 to 10000 (got -1)',
    );
    expect(await store.getFleet('k')).toBeUndefined();
  });

  it.each([
    [{ manifest: '' }, 'manifest: is empty'],
    [
      { manifest: 'kind: Other\n', fileName: 'x.yaml' },
      'manifest: x.yaml:1:7: kind: must be one of SmelterFleet, Note (got "Other")',
    ],
    [{ manifest: 'a: [\n', fileName: 'x.yaml' }, expect.stringMatching(/^manifest: x\.yaml:2:1: invalid YAML/)],
  ])('rejects %j with INVALID_ARGUMENT naming the field', async (req, details) => {
    const e = await grpcError(clients.fleet.applyFleet(req));
    expect(e.code).toBe(Status.INVALID_ARGUMENT);
    expect(e.details).toEqual(details);
  });

  it('drains servers: Ready and Allocated ones to Draining (never recycled), Starting ones stop', async () => {
    const hash = templateHash(fleetSpec('f').template);
    for (const name of ['r', 'a', 's'])
      await store.addServer(newServer(name, 'f', { labels: { [TEMPLATE_HASH_LABEL]: hash } }));
    await store.updateServer('r', { event: 'Healthy' });
    await store.updateServer('a', { event: 'Healthy' });
    await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const allocated = (await store.listServers()).find((s) => s.state === 'Allocated')!.name;
    const ready = allocated === 'r' ? 'a' : 'r';

    const res = await clients.fleet.drainServers({ servers: [ready, allocated, 's'], reason: 'maintenance' });
    expect(res.servers.map((s) => [s.name, s.state, s.drainRequested])).toEqual([
      [ready, fleetV1.ServerState.SERVER_STATE_DRAINING, 'maintenance'],
      [allocated, fleetV1.ServerState.SERVER_STATE_DRAINING, 'maintenance'],
      ['s', fleetV1.ServerState.SERVER_STATE_SHUTDOWN, ''],
    ]);
    const draining = res.servers.find((s) => s.name === allocated)!;
    expect(draining.drainDeadline!.getTime()).toBe(
      (await store.getServer(allocated))!.stateChangedAt + fleetSpec('f').drain.maxDrainTimeMs,
    );
    expect((await store.getServer(allocated))!.annotations[DRAIN_REQUESTED_ANNOTATION]).toBe('maintenance');
    // The composition keeps its server.
    expect(await store.getAllocation('c1')).toMatchObject({ serverName: allocated });
    expect(events.list().map((e) => [e.reason, e.object])).toEqual([
      ['Draining', `server/${ready}`],
      ['Draining', `server/${allocated}`],
      ['Draining', 'server/s'],
    ]);
    const listed = await clients.fleet.listEvents({ object: `server/${allocated}` });
    expect(listed.events).toEqual([
      expect.objectContaining({
        type: 'Normal',
        reason: 'Draining',
        message: 'maintenance; stops when composition c1 ends',
        count: 1,
      }),
    ]);
  });

  it('drains a whole fleet, and names bad input', async () => {
    await store.addServer(newServer('x', 'f'));
    await store.updateServer('x', { event: 'Healthy' });
    const res = await clients.fleet.drainServers({ fleet: 'f' });
    expect(res.servers.map((s) => [s.name, s.drainRequested])).toEqual([['x', 'drained by operator']]);
    for (const [req, code, details] of [
      [{}, Status.INVALID_ARGUMENT, 'servers: name servers, or a fleet'],
      [{ servers: ['x'], fleet: 'f' }, Status.INVALID_ARGUMENT, 'fleet: name servers or a fleet, not both'],
      [{ servers: [''] }, Status.INVALID_ARGUMENT, 'servers[0]: must not be empty'],
      [{ servers: ['nope'] }, Status.NOT_FOUND, 'server "nope" not found'],
      [{ fleet: 'nope' }, Status.NOT_FOUND, 'fleet "nope" not found'],
    ] as [{ servers?: string[]; fleet?: string }, Status, string][]) {
      const e = await grpcError(clients.fleet.drainServers(req));
      expect([e.code, e.details]).toEqual([code, details]);
    }
  });

  it('shows rollout progress in ListFleets and ListServers', async () => {
    const f: FleetSpec = fleetSpec('f');
    const hash = templateHash(f.template);
    await store.addServer(newServer('new', 'f', { labels: { [TEMPLATE_HASH_LABEL]: hash } }));
    await store.addServer(newServer('old', 'f', { labels: { [TEMPLATE_HASH_LABEL]: 'aaaaaaaaaa' } }));
    const { fleets } = await clients.fleet.listFleets({});
    expect(fleets[0]).toMatchObject({
      templateHash: hash,
      updatedServers: 1,
      outdatedServers: 1,
      strategy: 'RollingUpdate',
      maxSurge: '25%',
      maxUnavailable: '25%',
      maxDrainTime: { seconds: 3600, nanos: 0 },
    });
    const { servers } = await clients.fleet.listServers({});
    expect(servers.map((s) => [s.name, s.templateHash, s.outdated])).toEqual([
      ['new', hash, false],
      ['old', 'aaaaaaaaaa', true],
    ]);
  });
});
