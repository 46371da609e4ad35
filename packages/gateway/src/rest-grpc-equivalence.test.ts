// The same sequence of operations over gRPC (a real allocator server) and over REST (the mirror), each on its own
// identically prepared store, gives equivalent results and errors.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { silentLogger } from '@smelter-fleet/core';
import {
  allocationService,
  connectAllocator,
  fleetService,
  startAllocatorServer,
  type AllocatorClients,
  type AllocatorServer,
} from '@smelter-fleet/allocator';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import { restRouter } from './rest.js';
import { RestTestClient, serveRouter } from './rest-testing.js';

/** gRPC status names by number (the standard table, written out here independently of rest.ts). */
const STATUS = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

interface AllocateBody {
  fleet?: string;
  composition_id?: string;
  match_labels?: Record<string, string>;
  metadata?: Record<string, string>;
  wait_ms?: number;
  preference?: { regions?: string[]; client_region?: string };
}

type Op =
  { allocate: AllocateBody } | { get: string } | { release: string } | { list: string | undefined } | { fleets: true };

const OPS: Op[] = [
  { allocate: { fleet: 'f', composition_id: 'c1', metadata: { owner: 'eq' } } },
  { allocate: { fleet: 'f', composition_id: 'c1' } },
  { allocate: { fleet: 'f', composition_id: 'c2', match_labels: { zone: 'a' } } },
  { allocate: { fleet: 'f', composition_id: 'c3' } },
  { allocate: { fleet: 'f', composition_id: 'c3', wait_ms: 30 } },
  { allocate: { fleet: 'nope', composition_id: 'c4' } },
  { allocate: { fleet: 'g', composition_id: 'c5' } },
  { allocate: { match_labels: { zone: 'b' }, composition_id: 'c6' } },
  { allocate: { fleet: 'f', composition_id: 'bad id' } },
  { allocate: { fleet: 'f' } },
  { allocate: { composition_id: 'c7' } },
  { allocate: { fleet: 'Bad_Name', composition_id: 'c7' } },
  { allocate: { fleet: 'f', composition_id: 'c7', wait_ms: -5 } },
  { allocate: { fleet: 'f', composition_id: 'c7', wait_ms: 300_001 } },
  { allocate: { fleet: 'f', composition_id: 'c7', match_labels: { 'bad key': 'v' } } },
  { allocate: { fleet: 'f', composition_id: 'c7', metadata: { k: 'x'.repeat(4097) } } },
  { allocate: { fleet: 'f', composition_id: 'c7', preference: { regions: ['eu', 'eu'] } } },
  { allocate: { fleet: 'f', composition_id: 'c7', preference: { regions: ['mars'] } } },
  { allocate: { fleet: 'f', composition_id: 'c7', preference: { client_region: 'no such!' } } },
  { allocate: { fleet: 'f', composition_id: 'c7', preference: { regions: ['local'], client_region: 'local' } } },
  { get: 'c1' },
  { get: 'c9' },
  { get: 'bad id' },
  { list: undefined },
  { list: 'f' },
  { list: 'g' },
  { fleets: true },
  { release: 'c1' },
  { release: 'c1' },
  { release: 'bad id' },
  { get: 'c1' },
  { list: undefined },
];

type Outcome = { ok: unknown } | { error: { code: string; message: string } };

/** A REST body's snake_case keys in camelCase, map contents (ports, metadata, counts) left as they are. */
function camel(value: unknown, mapKey = false): unknown {
  if (Array.isArray(value)) return value.map((v) => camel(v));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      mapKey ? k : k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()),
      camel(v, !mapKey && ['ports', 'metadata', 'servers_by_state'].includes(k)),
    ]),
  );
}

/** Equal up to what differs between two stores by nature: tokens and times. */
function normalize(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (key, v: unknown) => {
      // REST durations carry their unit.
      if (key === 'maxDrainTimeMs') return undefined;
      if (key === 'token') return typeof v === 'string' && v.length === 43 ? '<token>' : v;
      if (key === 'allocatedAt') return '<time>';
      if (key === 'maxDrainTime' && typeof v === 'object' && v)
        return (v as { seconds: number }).seconds * 1000 + Math.round(((v as { nanos?: number }).nanos ?? 0) / 1e6);
      if (typeof v === 'object' && v && 'maxDrainTimeMs' in v) return { ...v, maxDrainTime: v.maxDrainTimeMs };
      return v;
    }),
  ) as unknown;
}

describe('REST and gRPC are equivalent', () => {
  const stores: MemoryStore[] = [];
  let grpcServer: AllocatorServer;
  let clients: AllocatorClients;
  let served: Awaited<ReturnType<typeof serveRouter>>;
  let rest: RestTestClient;
  const fleetInfo = () => ({ smelterCommand: 'emulator', emulated: true });

  async function prepared(): Promise<MemoryStore> {
    const store = new MemoryStore();
    stores.push(store);
    await store.putFleet(fleetSpec('f'));
    await store.putFleet(fleetSpec('g'));
    await store.addServer(newServer('s1', 'f'));
    await store.addServer(newServer('s2', 'f', { labels: { zone: 'a' } }));
    for (const name of ['s1', 's2']) await store.updateServer(name, { event: 'Healthy' });
    return store;
  }

  beforeAll(async () => {
    grpcServer = await startAllocatorServer({ store: await prepared(), fleetInfo });
    clients = connectAllocator(grpcServer.address);
    const store = await prepared();
    served = await serveRouter(
      restRouter({
        allocation: allocationService(store, silentLogger),
        fleet: fleetService({ store, fleetInfo, logger: silentLogger }),
      }),
    );
    rest = new RestTestClient(served.url);
  });

  afterAll(async () => {
    clients.close();
    await grpcServer.close({ force: true });
    await served.close();
    for (const s of stores) await s.close();
  });

  async function overGrpc(op: Op): Promise<Outcome> {
    try {
      if ('allocate' in op) {
        const b = op.allocate;
        return {
          ok: await clients.allocation.allocate({
            fleet: b.fleet ?? '',
            compositionId: b.composition_id ?? '',
            matchLabels: b.match_labels ?? {},
            metadata: b.metadata ?? {},
            ...(b.wait_ms !== undefined && {
              wait: { seconds: Math.trunc(b.wait_ms / 1000), nanos: (b.wait_ms % 1000) * 1e6 },
            }),
            ...(b.preference && {
              preference: { regions: b.preference.regions ?? [], clientRegion: b.preference.client_region ?? '' },
            }),
          }),
        };
      }
      if ('get' in op) return { ok: await clients.allocation.getAllocation({ compositionId: op.get }) };
      if ('release' in op) return { ok: await clients.allocation.release({ compositionId: op.release }) };
      if ('list' in op) return { ok: await clients.allocation.listAllocations({ fleet: op.list ?? '' }) };
      return { ok: await clients.fleet.listFleets({}) };
    } catch (err) {
      const e = err as { code: number; details: string };
      return { error: { code: STATUS[e.code]!, message: e.details } };
    }
  }

  async function overRest(op: Op): Promise<Outcome> {
    const res =
      'allocate' in op
        ? await rest.call('POST', '/v1/allocations', { body: op.allocate })
        : 'get' in op
          ? await rest.call('GET', `/v1/allocations/${encodeURIComponent(op.get)}`)
          : 'release' in op
            ? await rest.call('DELETE', `/v1/allocations/${encodeURIComponent(op.release)}`)
            : 'list' in op
              ? await rest.call('GET', `/v1/allocations${op.list === undefined ? '' : `?fleet=${op.list}`}`)
              : await rest.call('GET', '/v1/fleets');
    if (res.status === 200) return { ok: camel(res.body) };
    const { code, message, field } = res.body.error as { code: string; message: string; field?: string };
    // The field REST names is the one the message starts with (gRPC's only way to name it).
    if (code === 'INVALID_ARGUMENT') expect(message.startsWith(`${field}: `)).toBe(true);
    // REST spells the wait in ms.
    return { error: { code, message: message.replace(/^wait_ms:/, 'wait:') } };
  }

  it(`${OPS.length} operations give the same results and errors`, async () => {
    const codes: string[] = [];
    for (const op of OPS) {
      const [viaGrpc, viaRest] = [await overGrpc(op), await overRest(op)];
      expect({ op, outcome: normalize(viaRest) }).toEqual({ op, outcome: normalize(viaGrpc) });
      codes.push('ok' in viaGrpc ? 'OK' : viaGrpc.error.code);
    }
    // The sequence covers successes and every error the allocation API gives.
    expect(new Set(codes)).toEqual(new Set(['OK', 'RESOURCE_EXHAUSTED', 'NOT_FOUND', 'INVALID_ARGUMENT']));
  });
});
