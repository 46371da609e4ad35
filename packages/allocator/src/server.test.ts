import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import { fleetV1 } from '@smelter-fleet/proto';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import * as grpc from '@grpc/grpc-js';
import { createRequire } from 'node:module';
import { connectAllocator, type AllocatorClients } from './client.js';
import { startAllocatorServer, type AllocatorServer } from './server.js';

async function grpcError(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error('expected a gRPC error');
}

describe('allocator gRPC server', () => {
  let store: MemoryStore;
  let server: AllocatorServer;
  let clients: AllocatorClients;

  async function addReady(name: string, fleet = 'f') {
    await store.addServer(newServer(name, fleet, { pid: 100 }));
    await store.updateServer(name, { event: 'Healthy' });
  }

  beforeEach(async () => {
    store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    server = await startAllocatorServer({ store, fleetInfo: () => ({ smelterCommand: 'emulator', emulated: true }) });
    clients = connectAllocator(server.address);
  });

  afterEach(async () => {
    clients.close();
    await server.close({ force: true });
    await store.close();
  });

  it('allocates until exhausted, retries idempotently, releases', async () => {
    await addReady('s1');
    await addReady('s2');
    const a = await clients.allocation.allocate({ fleet: 'f', compositionId: 'c1', metadata: { who: 'test' } });
    expect(a.allocation).toMatchObject({
      compositionId: 'c1',
      fleet: 'f',
      address: '127.0.0.1',
      ports: { api: 1, whip_whep: 2, rtmp: 3 },
      metadata: { who: 'test' },
    });
    expect(a.allocation?.allocatedAt).toBeInstanceOf(Date);
    expect(a.allocation?.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await clients.allocation.allocate({ fleet: 'f', compositionId: 'c1' })).toEqual(a);
    const b = await clients.allocation.allocate({ fleet: 'f', compositionId: 'c2' });
    expect(b.allocation?.serverName).not.toBe(a.allocation?.serverName);
    const exhausted = await grpcError(clients.allocation.allocate({ fleet: 'f', compositionId: 'c3' }));
    expect(exhausted.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect((await clients.allocation.getAllocation({ compositionId: 'c1' })).allocation).toEqual(a.allocation);
    expect((await clients.allocation.listAllocations({})).allocations).toHaveLength(2);
    const released = await clients.allocation.release({ compositionId: 'c1' });
    expect(released.allocation?.serverName).toBe(a.allocation?.serverName);
    expect((await grpcError(clients.allocation.release({ compositionId: 'c1' }))).code).toBe(Status.NOT_FOUND);
    expect((await grpcError(clients.allocation.getAllocation({ compositionId: 'c1' }))).code).toBe(Status.NOT_FOUND);
  });

  it.each([
    [{ fleet: 'f' }, 'composition_id'],
    [{ fleet: 'f', compositionId: 'bad id' }, 'composition_id'],
    [{ compositionId: 'c1' }, 'fleet'],
    [{ fleet: 'F!', compositionId: 'c1' }, 'fleet'],
    [{ fleet: 'f', compositionId: 'c1', wait: { seconds: -1, nanos: 0 } }, 'wait'],
    [{ fleet: 'f', compositionId: 'c1', wait: { seconds: 3600, nanos: 0 } }, 'wait'],
  ])('INVALID_ARGUMENT names the field (%#)', async (req, field) => {
    const e = await grpcError(clients.allocation.allocate(req));
    expect(e.code).toBe(Status.INVALID_ARGUMENT);
    expect(e.details).toMatch(new RegExp(`^${field}: `));
  });

  it('answers NOT_FOUND for an unknown fleet', async () => {
    const e = await grpcError(clients.allocation.allocate({ fleet: 'nope', compositionId: 'c1' }));
    expect(e.code).toBe(Status.NOT_FOUND);
    expect(e.details).toMatch(/fleet "nope"/);
    expect((await grpcError(clients.fleet.listServers({ fleet: 'nope' }))).code).toBe(Status.NOT_FOUND);
  });

  it('waits for a server to become Ready within the wait budget', async () => {
    // Same store, instrumented to say when the waiting call subscribes to its change feed.
    let subscribed!: () => void;
    const watching = new Promise<void>((resolve) => (subscribed = resolve));
    const seen = Object.assign(Object.create(store) as MemoryStore, {
      watch: (signal: AbortSignal) => {
        subscribed();
        return store.watch(signal);
      },
    });
    const waiting = await startAllocatorServer({ store: seen });
    const client = connectAllocator(waiting.address);
    try {
      await store.addServer(newServer('s1', 'f'));
      const pending = client.allocation.allocate({ fleet: 'f', compositionId: 'c1', wait: { seconds: 30, nanos: 0 } });
      await watching;
      await store.updateServer('s1', { event: 'Healthy' });
      expect((await pending).allocation?.serverName).toBe('s1');
    } finally {
      client.close();
      await waiting.close({ force: true });
    }
  });

  it('gives up with RESOURCE_EXHAUSTED when the wait runs out', async () => {
    const e = await grpcError(
      clients.allocation.allocate({ fleet: 'f', compositionId: 'c1', wait: { seconds: 0, nanos: 200e6 } }),
    );
    expect(e.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/after waiting 200 ms/);
  });

  it('never gives one server to two compositions with 50 concurrent clients', async () => {
    for (let i = 0; i < 30; i++) await addReady(`s${i}`);
    const many = Array.from({ length: 50 }, () => connectAllocator(server.address));
    try {
      const results = await Promise.allSettled(
        many.map((c, i) => c.allocation.allocate({ fleet: 'f', compositionId: `c${i}` })),
      );
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.allocation!] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as ClientError] : []));
      expect(ok).toHaveLength(30);
      expect(new Set(ok.map((a) => a.serverName)).size).toBe(30);
      expect(failed.map((e) => e.code)).toEqual(Array(20).fill(Status.RESOURCE_EXHAUSTED));
      // Every retry returns the same server.
      const retried = await Promise.all(
        ok.map((a) => many[0]!.allocation.allocate({ fleet: 'f', compositionId: a.compositionId })),
      );
      expect(retried.map((r) => r.allocation!.serverName)).toEqual(ok.map((a) => a.serverName));
    } finally {
      many.forEach((c) => c.close());
    }
  });

  it('lists fleets with state counts and servers', async () => {
    await addReady('s1');
    await store.addServer(newServer('s2', 'f'));
    await clients.allocation.allocate({ fleet: 'f', compositionId: 'c1' });
    const { fleets } = await clients.fleet.listFleets({});
    expect(fleets).toEqual([
      expect.objectContaining({
        name: 'f',
        replicas: 3,
        serversByState: { Allocated: 1, Starting: 1 },
        emulated: true,
      }),
    ]);
    const { servers } = await clients.fleet.listServers({ fleet: 'f' });
    expect(servers.map((s) => [s.name, s.state, s.compositionId, s.pid])).toEqual([
      ['s1', fleetV1.ServerState.SERVER_STATE_ALLOCATED, 'c1', 100],
      ['s2', fleetV1.ServerState.SERVER_STATE_STARTING, '', 0],
    ]);
  });

  it('serves the standard health service', async () => {
    const channel = createChannel(server.address);
    const health = createClient(HealthDefinition, channel);
    expect((await health.check({ service: 'smelterfleet.allocation.v1.AllocationService' })).status).toBe(1); // SERVING
    channel.close();
  });
});

describe('server reflection', () => {
  it('lists the allocator services', async () => {
    const store = new MemoryStore();
    const server = await startAllocatorServer({ store });
    const require = createRequire(import.meta.url);
    const pb = require('nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js') as {
      ServerReflectionRequest: new () => { setListServices(v: string): unknown };
    };
    const Client = grpc.makeGenericClientConstructor(ServerReflectionService, 'ServerReflection');
    const client = new Client(server.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      serverReflectionInfo(): grpc.ClientDuplexStream<unknown, ReflectionResponse>;
    };
    try {
      const call = client.serverReflectionInfo();
      const answered = new Promise<ReflectionResponse>((resolve, reject) => {
        call.once('data', resolve);
        call.once('error', reject);
      });
      const request = new pb.ServerReflectionRequest();
      request.setListServices('*');
      call.write(request);
      const response = await answered;
      call.end();
      const names = response
        .getListServicesResponse()!
        .getServiceList()
        .map((s) => s.getName());
      expect(names.sort()).toEqual([
        'grpc.health.v1.Health',
        'smelterfleet.allocation.v1.AllocationService',
        'smelterfleet.fleet.v1.FleetService',
      ]);
    } finally {
      client.close();
      await server.close({ force: true });
    }
  });
});

interface ReflectionResponse {
  getListServicesResponse(): { getServiceList(): { getName(): string }[] } | undefined;
}
