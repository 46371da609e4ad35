import { afterEach, describe, expect, it } from '@jest/globals';
import { FleetError, type AllocationRequest } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, freePort, newServer } from '@smelter-fleet/testing';
import { ClientError, Metadata, Status } from 'nice-grpc';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CallerAuth } from './auth.js';
import { connectAllocator, type AllocatorClients } from './client.js';
import { checkRegionPreference, FORWARDED_HEADER, orderRegions, type RegionRoutingOptions } from './regions.js';
import { startAllocatorServer, type AllocatorServer } from './server.js';

describe('orderRegions', () => {
  const base = { localRegion: 'eu', peerRegions: ['us', 'ap', 'sa'] };
  const latencyMs = { eu: { us: 80, ap: 150 }, ap: { us: 120, sa: 300 }, sa: { us: 110 } };

  it('without a preference: this region, then the peers in the operator order', () => {
    expect(orderRegions(base)).toEqual(['eu', 'us', 'ap', 'sa']);
    expect(orderRegions({ ...base, peerRegions: ['eu', 'us'] })).toEqual(['eu', 'us']);
  });

  it('without a preference but with a latency table: peers nearest to this region first, unknown last', () => {
    expect(orderRegions({ ...base, latencyMs: { eu: { ap: 20, us: 80 } } })).toEqual(['eu', 'ap', 'us', 'sa']);
    // Either direction of the table serves.
    expect(orderRegions({ ...base, latencyMs: { sa: { eu: 10 } } })).toEqual(['eu', 'sa', 'us', 'ap']);
  });

  it('a region list is tried in its order and is the only regions tried', () => {
    const preference = { regions: ['ap', 'eu', 'mars'], clientRegion: '' };
    expect(orderRegions({ ...base, latencyMs, preference })).toEqual(['ap', 'eu', 'mars']);
  });

  it('a client region orders every known region nearest to the client first', () => {
    const preference = { regions: [], clientRegion: 'ap' };
    expect(orderRegions({ ...base, latencyMs, preference })).toEqual(['ap', 'us', 'eu', 'sa']);
    // A client region of no known latency: its own region if known, the rest in the default order.
    expect(orderRegions({ ...base, preference: { regions: [], clientRegion: 'us' } })).toEqual([
      'us',
      'eu',
      'ap',
      'sa',
    ]);
  });

  it('a client region with a list orders only the listed regions, list order breaking ties', () => {
    const preference = { regions: ['sa', 'eu', 'us', 'mars', 'moon'], clientRegion: 'ap' };
    expect(orderRegions({ ...base, latencyMs, preference })).toEqual(['us', 'eu', 'sa', 'mars', 'moon']);
  });
});

describe('checkRegionPreference', () => {
  const field = (regions: string[], clientRegion = '') => {
    try {
      checkRegionPreference({ regions, clientRegion });
    } catch (e) {
      expect(e).toBeInstanceOf(FleetError);
      expect((e as FleetError).code).toBe('INVALID_ARGUMENT');
      return (e as FleetError).field;
    }
    return undefined;
  };

  it('accepts region names, and no preference at all', () => {
    expect(() => checkRegionPreference(undefined)).not.toThrow();
    expect(field(['eu-west-1', 'us_east.2', 'AP'], 'local')).toBeUndefined();
    expect(field([])).toBeUndefined();
  });

  it('names the bad field', () => {
    expect(field(['eu', ''])).toBe('preference.regions[1]');
    expect(field(['eu', 'has space'])).toBe('preference.regions[1]');
    expect(field(['eu', 'us', 'eu'])).toBe('preference.regions[2]');
    expect(field(Array.from({ length: 17 }, (_, i) => `r${i}`))).toBe('preference.regions');
    expect(field(['eu'], '-bad')).toBe('preference.client_region');
    expect(field([], 'x'.repeat(64))).toBe('preference.client_region');
  });
});

/** A store that counts allocate calls, to see that a forwarded request is never bounced back. */
class CountingStore extends MemoryStore {
  allocateCalls = 0;
  override async allocate(request: AllocationRequest) {
    this.allocateCalls++;
    return super.allocate(request);
  }
}

interface Region {
  name: string;
  store: CountingStore;
  server: AllocatorServer;
  client: AllocatorClients;
  addReady(serverName: string): Promise<void>;
}

async function grpcError(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error('expected a gRPC error');
}

describe('allocation across regions', () => {
  const started: Region[] = [];
  const tcp: TcpServer[] = [];
  const sockets: Socket[] = [];

  afterEach(async () => {
    for (const r of started.splice(0)) {
      r.client.close();
      await r.server.close({ force: true });
      await r.store.close();
    }
    sockets.splice(0).forEach((s) => s.destroy());
    await Promise.all(tcp.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  /** One region: its own store (fleet "live" declared in that region) and allocator. */
  async function startRegion(
    name: string,
    options: Omit<RegionRoutingOptions, 'region'> & { port?: number; auth?: CallerAuth; token?: string } = {},
  ): Promise<Region> {
    const store = new CountingStore();
    await store.putFleet(fleetSpec('live', { region: name }));
    const { port = 0, auth, token, ...regions } = options;
    const server = await startAllocatorServer({
      store,
      address: `127.0.0.1:${port}`,
      regions: { region: name, ...regions },
      ...(auth && { auth }),
    });
    const region: Region = {
      name,
      store,
      server,
      client: connectAllocator(server.address, token === undefined ? {} : { token }),
      async addReady(serverName) {
        await store.addServer(newServer(serverName, 'live', { region: name, pid: 100 }));
        await store.updateServer(serverName, { event: 'Healthy' });
      },
    };
    started.push(region);
    return region;
  }

  it('a full preferred region hands over to the next one, which serves and says so', async () => {
    const us = await startRegion('us');
    await us.addReady('us-1');
    const eu = await startRegion('eu', { peers: { us: us.server.address } });
    const { allocation } = await eu.client.allocation.allocate({
      fleet: 'live',
      compositionId: 'show',
      preference: { regions: ['eu', 'us'] },
    });
    expect(allocation).toMatchObject({ compositionId: 'show', region: 'us', serverName: 'us-1', fleet: 'live' });
    expect(await us.store.getAllocation('show')).toMatchObject({ token: allocation?.token });
    expect(await eu.store.getAllocation('show')).toBeUndefined();

    // GetAllocation and Release through eu reach the composition's region.
    expect((await eu.client.allocation.getAllocation({ compositionId: 'show' })).allocation).toEqual(allocation);
    expect((await eu.client.allocation.release({ compositionId: 'show' })).allocation?.serverName).toBe('us-1');
    expect(await us.store.getAllocation('show')).toBeUndefined();
    const gone = await grpcError(eu.client.allocation.getAllocation({ compositionId: 'show' }));
    expect(gone.code).toBe(Status.NOT_FOUND);
    expect(gone.details).toBe('composition "show" has no allocation (looked in regions eu, us)');
    expect((await grpcError(eu.client.allocation.release({ compositionId: 'show' }))).code).toBe(Status.NOT_FOUND);
  });

  it('without a preference: this region first, then its peers', async () => {
    const us = await startRegion('us');
    await us.addReady('us-1');
    const eu = await startRegion('eu', { peers: { us: us.server.address } });
    await eu.addReady('eu-1');
    const first = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'a' });
    expect(first.allocation).toMatchObject({ region: 'eu', serverName: 'eu-1' });
    const second = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'b' });
    expect(second.allocation).toMatchObject({ region: 'us', serverName: 'us-1' });
    const none = await grpcError(eu.client.allocation.allocate({ fleet: 'live', compositionId: 'c' }));
    expect(none.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(none.details).toBe(
      'no region could serve composition "c": tried eu (no Ready server in fleet "live"), ' +
        'us (RESOURCE_EXHAUSTED: no Ready server in fleet "live")',
    );
  });

  it('a client region picks the nearest region by the latency table', async () => {
    const ap = await startRegion('ap');
    await ap.addReady('ap-1');
    const us = await startRegion('us');
    await us.addReady('us-1');
    const eu = await startRegion('eu', {
      peers: { us: us.server.address, ap: ap.server.address },
      latencyMs: { sg: { eu: 160, us: 180, ap: 30 } },
    });
    await eu.addReady('eu-1');
    const { allocation } = await eu.client.allocation.allocate({
      fleet: 'live',
      compositionId: 'near',
      preference: { clientRegion: 'sg' },
    });
    expect(allocation).toMatchObject({ region: 'ap', serverName: 'ap-1' });
  });

  it('a region that is down is skipped, and named when nothing serves', async () => {
    const us = await startRegion('us');
    const ap = await startRegion('ap');
    await ap.addReady('ap-1');
    const eu = await startRegion('eu', { peers: { us: us.server.address, ap: ap.server.address } });
    await us.server.close({ force: true });
    const preference = { regions: ['eu', 'us', 'ap'] };
    const { allocation } = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'x', preference });
    expect(allocation).toMatchObject({ region: 'ap', serverName: 'ap-1' });

    const none = await grpcError(eu.client.allocation.allocate({ fleet: 'live', compositionId: 'y', preference }));
    expect(none.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(none.details).toMatch(
      /^no region could serve composition "y": tried eu \(no Ready server in fleet "live"\), us \(UNAVAILABLE: .+\), ap \(RESOURCE_EXHAUSTED: no Ready server in fleet "live"\)$/,
    );
    // A composition nowhere to be found while a region cannot be asked: not NOT_FOUND, which could be wrong.
    const unsure = await grpcError(eu.client.allocation.getAllocation({ compositionId: 'y' }));
    expect(unsure.code).toBe(Status.UNAVAILABLE);
    expect(unsure.details).toMatch(/^composition "y" is not allocated in eu, ap; could not ask us \(UNAVAILABLE: /);
    // But one found elsewhere is found.
    expect((await eu.client.allocation.getAllocation({ compositionId: 'x' })).allocation).toEqual(allocation);
  });

  it('a region that does not answer is given up after forwardTimeoutMs, then the next serves', async () => {
    // Accepts TCP connections and never speaks HTTP/2: every call to it hangs.
    const silent = createTcpServer((socket) => sockets.push(socket));
    tcp.push(silent);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    const ap = await startRegion('ap');
    await ap.addReady('ap-1');
    const eu = await startRegion('eu', {
      peers: { us: `127.0.0.1:${silentPort}`, ap: ap.server.address },
      forwardTimeoutMs: 300,
      lookupBeforeAllocate: false,
    });
    const preference = { regions: ['us', 'ap'] };
    const { allocation } = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'z', preference });
    expect(allocation).toMatchObject({ region: 'ap', serverName: 'ap-1' });
    const none = await grpcError(
      eu.client.allocation.allocate({ fleet: 'live', compositionId: 'z2', preference: { regions: ['us'] } }),
    );
    expect(none.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(none.details).toBe('no region could serve composition "z2": tried us (no answer within 300 ms)');
  });

  it('a forwarded request is never forwarded again: two empty regions peering each other answer once each', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const a = await startRegion('a', { port: portA, peers: { b: `127.0.0.1:${portB}` } });
    const b = await startRegion('b', { port: portB, peers: { a: `127.0.0.1:${portA}` } });
    const none = await grpcError(a.client.allocation.allocate({ fleet: 'live', compositionId: 'loop' }));
    expect(none.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(none.details).toBe(
      'no region could serve composition "loop": tried a (no Ready server in fleet "live"), ' +
        'b (RESOURCE_EXHAUSTED: no Ready server in fleet "live")',
    );
    expect([a.store.allocateCalls, b.store.allocateCalls]).toEqual([1, 1]);

    // A call marked forwarded is served locally only, whatever its preference.
    const marked = await grpcError(
      b.client.allocation.allocate(
        { fleet: 'live', compositionId: 'loop', preference: { regions: ['a', 'b'] } },
        { metadata: Metadata({ [FORWARDED_HEADER]: 'a' }) },
      ),
    );
    expect(marked.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(marked.details).toBe('no Ready server in fleet "live"');
    expect([a.store.allocateCalls, b.store.allocateCalls]).toEqual([1, 2]);
  });

  it('a retry through any region returns the allocation made in another', async () => {
    const us = await startRegion('us');
    await us.addReady('us-1');
    const [euPort, apPort] = [await freePort(), await freePort()];
    const eu = await startRegion('eu', {
      port: euPort,
      peers: { us: us.server.address, ap: `127.0.0.1:${apPort}` },
    });
    const ap = await startRegion('ap', { port: apPort, peers: { eu: eu.server.address, us: us.server.address } });
    const first = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'retry', metadata: { n: '1' } });
    expect(first.allocation).toMatchObject({ region: 'us', serverName: 'us-1' });

    // Capacity appears in eu and ap meanwhile: a retry must not take it.
    await eu.addReady('eu-1');
    await ap.addReady('ap-1');
    const viaEu = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'retry' });
    const viaAp = await ap.client.allocation.allocate({
      fleet: 'live',
      compositionId: 'retry',
      preference: { regions: ['ap'] },
    });
    expect(viaEu.allocation).toEqual(first.allocation);
    expect(viaAp.allocation).toEqual(first.allocation);
    expect(await eu.store.listAllocations()).toEqual([]);
    expect(await ap.store.listAllocations()).toEqual([]);

    // The same fleet rule as within one region: a retry naming another fleet is refused, naming the region.
    const other = await grpcError(ap.client.allocation.allocate({ fleet: 'other', compositionId: 'retry' }));
    expect(other.code).toBe(Status.FAILED_PRECONDITION);
    expect(other.details).toBe(
      'region us: FAILED_PRECONDITION: composition "retry" is already allocated in fleet "live"',
    );
  });

  it('peers authenticate like any caller: with the peer token forwarded calls pass, without it the region is skipped', async () => {
    const tokensFile = join(mkdtempSync(join(tmpdir(), 'regions-')), 'tokens');
    writeFileSync(tokensFile, 'client:client-secret-1\npeer-eu:peer-secret-2\n');
    const auth = await CallerAuth.create({ tokensFile });
    try {
      const us = await startRegion('us', { auth, token: 'client-secret-1' });
      await us.addReady('us-1');
      const eu = await startRegion('eu', {
        peers: { us: us.server.address },
        peerMetadata: () => ({ authorization: 'Bearer peer-secret-2' }),
      });
      const { allocation } = await eu.client.allocation.allocate({ fleet: 'live', compositionId: 'ok' });
      expect(allocation).toMatchObject({ region: 'us', serverName: 'us-1' });

      const stranger = await startRegion('ap', { peers: { us: us.server.address } });
      const refused = await grpcError(stranger.client.allocation.allocate({ fleet: 'live', compositionId: 'no' }));
      expect(refused.code).toBe(Status.RESOURCE_EXHAUSTED);
      expect(refused.details).toMatch(
        /^no region could serve composition "no": tried ap \(no Ready server in fleet "live"\), us \(UNAUTHENTICATED: /,
      );
    } finally {
      auth.close();
    }
  });

  it('bad preferences are INVALID_ARGUMENT naming the field', async () => {
    const eu = await startRegion('eu');
    const cases: [object, string][] = [
      [{ regions: ['eu', 'eu'] }, 'preference.regions[1]: "eu" is listed twice'],
      [{ regions: ['no spaces'] }, 'preference.regions[0]: "no spaces" is not a region name'],
      [{ clientRegion: '#' }, 'preference.client_region: "#" is not a region name'],
      [{ regions: ['mars', 'moon'] }, 'preference.regions: no allocator known for mars, moon (known: eu)'],
    ];
    for (const [preference, message] of cases) {
      const e = await grpcError(eu.client.allocation.allocate({ fleet: 'live', compositionId: 'c', preference }));
      expect(e.code).toBe(Status.INVALID_ARGUMENT);
      expect(e.details.startsWith(message)).toBe(true);
    }
  });
});
