import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { silentLogger } from '@smelter-fleet/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  allocationService,
  CallerAuth,
  fleetService,
  RegionRouter,
  startAllocatorServer,
} from '@smelter-fleet/allocator';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { pendingRestRouter, restRouter, type RestOptions } from './rest.js';
import { OpenApiChecker, RestTestClient, serveRouter } from './rest-testing.js';

describe('REST mirror', () => {
  let store: MemoryStore;
  let served: Awaited<ReturnType<typeof serveRouter>>;
  let rest: RestTestClient;

  async function addReady(name: string, fleet = 'f') {
    await store.addServer(
      newServer(name, fleet, { address: '10.1.2.3', ports: { api: 8081, whip_whep: 9000, rtmp: 1935 } }),
    );
    await store.updateServer(name, { event: 'Healthy' });
  }

  async function start(options: Partial<RestOptions> = {}) {
    const router = restRouter({
      allocation: allocationService(store, silentLogger, { gatewayUrl: 'http://gw.example:8090' }),
      fleet: fleetService({
        store,
        fleetInfo: () => ({ smelterCommand: 'emulator', emulated: true }),
        logger: silentLogger,
      }),
      ...options,
    });
    // A later route, as the gateway's proxy is: paths that are not the mirror's must reach it.
    served = await serveRouter(router, (app) => app.use((_req, res) => void res.status(418).json({ later: true })));
    rest = new RestTestClient(served.url);
  }

  beforeEach(async () => {
    store = new MemoryStore();
    await store.putFleet(fleetSpec('f', { region: 'eu' }));
  });

  afterEach(async () => {
    await served?.close();
    await store.close();
  });

  it('allocates, retries idempotently, gets, lists, releases; the allocation carries gateway and media URLs', async () => {
    await start();
    await addReady('s1');
    await addReady('s2');
    const a = await rest.call('POST', '/v1/allocations', {
      body: { fleet: 'f', composition_id: 'c1', metadata: { who: 'test' } },
    });
    expect(a.status).toBe(200);
    expect(a.body.allocation).toMatchObject({
      composition_id: 'c1',
      fleet: 'f',
      address: '10.1.2.3',
      ports: { api: 8081, whip_whep: 9000, rtmp: 1935 },
      metadata: { who: 'test' },
      gateway_url: 'http://gw.example:8090/v1/compositions/c1/smelter',
      media: {
        whip_url_template: 'http://10.1.2.3:9000/whip/{input_id}',
        whep_url_template: 'http://10.1.2.3:9000/whep/{output_id}',
        rtmp_url_template: 'rtmp://10.1.2.3:1935/{input_id}/{stream_key}',
      },
    });
    expect(a.body.allocation.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(a.body.allocation.allocated_at)).not.toBeNaN();

    const again = await rest.call('POST', '/v1/allocations', { body: { fleet: 'f', composition_id: 'c1' } });
    expect(again.body).toEqual(a.body);
    expect((await rest.call('GET', '/v1/allocations/c1')).body).toEqual(a.body);

    const b = await rest.call('POST', '/v1/allocations', {
      body: { match_labels: {}, fleet: 'f', composition_id: 'c2' },
    });
    expect(b.body.allocation.server_name).not.toBe(a.body.allocation.server_name);
    const exhausted = await rest.call('POST', '/v1/allocations', { body: { fleet: 'f', composition_id: 'c3' } });
    expect(exhausted.status).toBe(429);
    expect(exhausted.body.error.code).toBe('RESOURCE_EXHAUSTED');

    const list = await rest.call('GET', '/v1/allocations?fleet=f');
    expect(list.body.allocations.map((x: { composition_id: string }) => x.composition_id).sort()).toEqual(['c1', 'c2']);
    expect((await rest.call('GET', '/v1/allocations?fleet=other')).body).toEqual({ allocations: [] });

    const released = await rest.call('DELETE', '/v1/allocations/c1');
    expect(released.status).toBe(200);
    expect(released.body.allocation.server_name).toBe(a.body.allocation.server_name);
    const gone = await rest.call('DELETE', '/v1/allocations/c1');
    expect(gone.status).toBe(404);
    expect(gone.body.error).toMatchObject({ code: 'NOT_FOUND', message: 'composition "c1" has no allocation' });
    expect((await rest.call('GET', '/v1/allocations/c1')).status).toBe(404);
  });

  it('wait_ms waits for a server to turn Ready', async () => {
    await start();
    await store.addServer(newServer('s1', 'f'));
    const pending = rest.call('POST', '/v1/allocations', {
      body: { fleet: 'f', composition_id: 'c1', wait_ms: 60_000 },
    });
    await store.updateServer('s1', { event: 'Healthy' });
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.body.allocation.server_name).toBe('s1');
  });

  it('a caller going away cancels its waiting Allocate (nothing is allocated for it)', async () => {
    // A real MemoryStore that says when a waiting Allocate subscribes to its changes, and when it lets go.
    const watched = new Promise<AbortSignal>((resolve) => {
      const watch = store.watch.bind(store);
      store.watch = (signal) => {
        resolve(signal);
        return watch(signal);
      };
    });
    await start();
    const controller = new AbortController();
    const pending = fetch(`${served.url}/v1/allocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fleet: 'f', composition_id: 'gone', wait_ms: 60_000 }),
      signal: controller.signal,
    });
    const signal = await watched;
    controller.abort();
    await expect(pending).rejects.toThrow();
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    await addReady('s1');
    expect(await store.getAllocation('gone')).toBeUndefined();
    expect((await store.getServer('s1'))?.state).toBe('Ready');
  });

  it.each<[string, unknown, string]>([
    ['no composition_id', { fleet: 'f' }, 'composition_id'],
    ['a bad composition_id', { fleet: 'f', composition_id: 'bad id' }, 'composition_id'],
    ['no fleet nor labels', { composition_id: 'c1' }, 'fleet'],
    ['a bad fleet name', { fleet: 'F!', composition_id: 'c1' }, 'fleet'],
    ['a number for fleet', { fleet: 7, composition_id: 'c1' }, 'fleet'],
    ['a null composition_id', { fleet: 'f', composition_id: null }, 'composition_id'],
    ['a bad label key', { match_labels: { 'bad key': 'x' }, composition_id: 'c1' }, 'match_labels.bad key'],
    ['a number label value', { match_labels: { zone: 1 }, composition_id: 'c1' }, 'match_labels.zone'],
    ['metadata as an array', { fleet: 'f', composition_id: 'c1', metadata: ['x'] }, 'metadata'],
    ['a long metadata value', { fleet: 'f', composition_id: 'c1', metadata: { k: 'x'.repeat(4097) } }, 'metadata.k'],
    ['a negative wait_ms', { fleet: 'f', composition_id: 'c1', wait_ms: -1 }, 'wait_ms'],
    ['a wait_ms too long', { fleet: 'f', composition_id: 'c1', wait_ms: 300_001 }, 'wait_ms'],
    ['a fractional wait_ms', { fleet: 'f', composition_id: 'c1', wait_ms: 1.5 }, 'wait_ms'],
    ['a string wait_ms', { fleet: 'f', composition_id: 'c1', wait_ms: '2s' }, 'wait_ms'],
    ['an unknown field', { fleet: 'f', composition_id: 'c1', fleet_name: 'f' }, 'fleet_name'],
    ['a camelCase field', { fleet: 'f', compositionId: 'c1' }, 'compositionId'],
    [
      'a repeated region',
      { fleet: 'f', composition_id: 'c1', preference: { regions: ['eu', 'eu'] } },
      'preference.regions[1]',
    ],
    [
      'a bad client region',
      { fleet: 'f', composition_id: 'c1', preference: { client_region: 'a b' } },
      'preference.client_region',
    ],
    [
      'an unknown preference field',
      { fleet: 'f', composition_id: 'c1', preference: { near: 'eu' } },
      'preference.near',
    ],
    ['an array body', [{ fleet: 'f', composition_id: 'c1' }], 'body'],
  ])('400 names the field: %s', async (_what, body, field) => {
    await start();
    const res = await rest.call('POST', '/v1/allocations', { body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INVALID_ARGUMENT');
    expect(res.body.error.field).toBe(field);
    expect(res.body.error.message).toContain(field);
  });

  it('refuses malformed JSON, other content types, a missing body and a body over the limit', async () => {
    await start();
    const malformed = await rest.call('POST', '/v1/allocations', { body: '{"fleet": "f",' });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'body' });
    expect(malformed.body.error.message).toMatch(/^body: malformed JSON/);

    const text = await rest.call('POST', '/v1/allocations', { body: 'fleet=f', contentType: 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', field: 'content-type' });
    const none = await rest.call('POST', '/v1/allocations', { contentType: null });
    expect(none.status).toBe(415);
    const latin1 = await rest.call('POST', '/v1/allocations', {
      body: '{}',
      contentType: 'application/json; charset=iso-8859-1',
    });
    expect(latin1.status).toBe(415);
    expect(latin1.body.error.field).toBe('content-type');

    const empty = await rest.call('POST', '/v1/allocations', { body: '' });
    expect(empty.status).toBe(400);
    expect(empty.body.error.field).toBe('body');

    const big = await rest.call('POST', '/v1/allocations', {
      body: { fleet: 'f', composition_id: 'c1', metadata: { k: 'x'.repeat(1024 * 1024) } },
    });
    expect(big.status).toBe(413);
    expect(big.body.error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', field: 'body' });
    expect(big.body.error.message).toBe('body: larger than 1048576 bytes');
  });

  it('query parameters, path parameters, methods and unknown paths are answered in JSON naming what is wrong', async () => {
    await start();
    const unknownQuery = await rest.call('GET', '/v1/allocations?fleet=f&limit=3');
    expect(unknownQuery.status).toBe(400);
    expect(unknownQuery.body.error.field).toBe('limit');
    const twice = await rest.call('GET', '/v1/allocations?fleet=f&fleet=g');
    expect(twice.status).toBe(400);
    expect(twice.body.error.field).toBe('fleet');

    const badId = await rest.call('GET', '/v1/allocations/bad%20id');
    expect(badId.status).toBe(400);
    expect(badId.body.error.field).toBe('composition_id');
    const badEncoding = await rest.call('GET', '/v1/allocations/%E0%A4%A');
    expect(badEncoding.status).toBe(400);
    expect(badEncoding.body.error.field).toBe('path');

    const put = await rest.call('PUT', '/v1/allocations/c1', { body: {} });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('DELETE, GET, HEAD');
    expect(put.body.error).toMatchObject({ code: 'METHOD_NOT_ALLOWED', field: 'method' });
    const options = await rest.call('OPTIONS', '/v1/fleets');
    expect(options.status).toBe(204);
    expect(options.headers.get('allow')).toBe('GET, HEAD');

    const nested = await rest.call('GET', '/v1/allocations/c1/extra');
    expect(nested.status).toBe(404);
    expect(nested.body.error).toMatchObject({ code: 'NOT_FOUND', field: 'path' });

    // Not the mirror's: on to the next route.
    const other = await fetch(`${served.url}/v1/compositions/c1/smelter/status`);
    expect(other.status).toBe(418);
  });

  it('fleet status, all fleets and one', async () => {
    await start();
    await addReady('s1');
    await store.putFleet(fleetSpec('g'));
    const list = await rest.call('GET', '/v1/fleets');
    expect(list.status).toBe(200);
    expect(list.body.fleets.map((f: { name: string }) => f.name).sort()).toEqual(['f', 'g']);
    const one = await rest.call('GET', '/v1/fleets/f');
    expect(one.body.fleet).toMatchObject({
      name: 'f',
      region: 'eu',
      servers_by_state: { Ready: 1 },
      smelter_command: 'emulator',
      emulated: true,
    });
    expect(typeof one.body.fleet.max_drain_time_ms).toBe('number');
    const missing = await rest.call('GET', '/v1/fleets/nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'NOT_FOUND', field: 'name' });
    const bad = await rest.call('GET', '/v1/fleets/No_Such');
    expect(bad.status).toBe(400);
    expect(bad.body.error.field).toBe('name');
  });

  it('callers need a listed bearer token (the allocator CallerAuth); the document stays public', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rest-auth-'));
    writeFileSync(join(dir, 'tokens'), 'backend:s3cret-token\n');
    const auth = await CallerAuth.create({ tokensFile: join(dir, 'tokens'), pollIntervalMs: 60_000 });
    try {
      await start({ auth });
      await addReady('s1');
      const missing = await rest.call('POST', '/v1/allocations', { body: { fleet: 'f', composition_id: 'c1' } });
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer');
      expect(missing.body.error).toMatchObject({ code: 'UNAUTHENTICATED', field: 'authorization' });
      const wrong = await rest.call('GET', '/v1/fleets', { headers: { authorization: 'Bearer nope' } });
      expect(wrong.status).toBe(401);
      expect(wrong.text).not.toContain('nope');
      // Refused before the body is even looked at.
      const bad = await rest.call('POST', '/v1/allocations', { body: '{', headers: { authorization: 'Basic x' } });
      expect(bad.status).toBe(401);
      expect(await store.getAllocation('c1')).toBeUndefined();

      const ok = await rest.call('POST', '/v1/allocations', {
        body: { fleet: 'f', composition_id: 'c1' },
        headers: { authorization: 'Bearer s3cret-token' },
      });
      expect(ok.status).toBe(200);
      expect((await rest.call('GET', '/openapi.json')).status).toBe(200);
    } finally {
      auth.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('region forwarding comes with the service: a full region hands over to its peer, and the answer says so', async () => {
    // Region "us": its own store and allocator (gRPC), with the only Ready server.
    const usStore = new MemoryStore();
    await usStore.putFleet(fleetSpec('f', { region: 'us' }));
    await usStore.addServer(newServer('us-1', 'f', { address: '10.9.9.9', region: 'us' }));
    await usStore.updateServer('us-1', { event: 'Healthy' });
    const us = await startAllocatorServer({ store: usStore, regions: { region: 'us' } });
    // Region "eu" (this REST mirror's): fleet f with no server.
    const regions = new RegionRouter(store, { region: 'eu', peers: { us: us.address } });
    try {
      await start({ allocation: allocationService(store, silentLogger, {}, regions) });
      const res = await rest.call('POST', '/v1/allocations', {
        body: { fleet: 'f', composition_id: 'c1', preference: { regions: ['eu', 'us'] } },
      });
      expect(res.status).toBe(200);
      expect(res.body.allocation).toMatchObject({ region: 'us', server_name: 'us-1', address: '10.9.9.9' });
      expect(res.body.allocation.media.whip_url_template).toMatch(/^http:\/\/10\.9\.9\.9:\d+\/whip\/\{input_id\}$/);
      // Get and release reach it there too.
      expect((await rest.call('GET', '/v1/allocations/c1')).body.allocation.region).toBe('us');
      expect((await rest.call('DELETE', '/v1/allocations/c1')).status).toBe(200);
      expect(await usStore.getAllocation('c1')).toBeUndefined();
      const nowhere = await rest.call('POST', '/v1/allocations', {
        body: { fleet: 'f', composition_id: 'c2', preference: { regions: ['mars'] } },
      });
      expect(nowhere.status).toBe(400);
      expect(nowhere.body.error.field).toBe('preference.regions');
    } finally {
      regions.close();
      await us.close({ force: true });
      await usStore.close();
    }
  });

  it('a pending router answers 503 on its paths until served, and passes others on', async () => {
    const pending = pendingRestRouter();
    served = await serveRouter(pending.router, (app) => app.use((_req, res) => void res.status(418).end()));
    rest = new RestTestClient(served.url);
    const early = await rest.call('GET', '/v1/fleets');
    expect(early.status).toBe(503);
    expect(early.body.error.code).toBe('UNAVAILABLE');
    expect((await fetch(`${served.url}/v1/compositions/c1/smelter/status`)).status).toBe(418);
    pending.serve({
      allocation: allocationService(store, silentLogger),
      fleet: fleetService({ store, fleetInfo: () => ({ smelterCommand: '', emulated: false }), logger: silentLogger }),
    });
    expect((await rest.call('GET', '/v1/fleets')).status).toBe(200);
  });

  it('serves its OpenAPI document, which is well-formed', async () => {
    await start();
    const res = await rest.call('GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body).toEqual(JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
    expect(res.body).toMatchObject({ openapi: '3.1.0', info: { title: expect.any(String), version: '1.0.0' } });
    const checker = new OpenApiChecker();
    const operationIds: string[] = [];
    for (const [path, item] of Object.entries(OPENAPI_DOCUMENT.paths))
      for (const method of Object.keys(item)) {
        // Resolves to itself, answers 200, and declares exactly the path's parameters.
        const found = checker.operation(method, path.replace(/\{\w+\}/g, 'x1'));
        if (!found || !('operation' in found)) throw new Error(`${method} ${path} does not resolve`);
        const { operation } = found;
        expect(operation.responses['200']).toBeTruthy();
        operationIds.push(operation.operationId);
        const inPath = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
        const declared = (operation.parameters ?? []).filter((p) => p.in === 'path');
        expect(declared.map((p) => p.name)).toEqual(inPath);
        expect(declared.every((p) => p.required)).toBe(true);
      }
    expect(new Set(operationIds).size).toBe(operationIds.length);
    // Every $ref resolves.
    const refs = JSON.stringify(OPENAPI_DOCUMENT).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const ref of refs) {
      const name = /#\/components\/schemas\/(\w+)/.exec(ref)?.[1];
      expect(name && name in OPENAPI_DOCUMENT.components.schemas).toBeTruthy();
    }
  });
});
