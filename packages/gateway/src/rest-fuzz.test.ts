// Fuzzes the REST mirror with cases generated from its OpenAPI document (fast-check, fixed seed: reproducible).
// Every case goes through RestTestClient, which fails on a response the document does not describe and on a
// verdict contradicting the document's (a schema error for a request it accepts, a success for one it refuses).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { silentLogger } from '@smelter-fleet/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocationService, CallerAuth, fleetService } from '@smelter-fleet/allocator';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import fc from 'fast-check';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { restRouter } from './rest.js';
import { RestTestClient, serveRouter, type RestCall } from './rest-testing.js';

const SEED = 20261124;
const RUNS = 1500;

type Schema = Record<string, unknown>;
const schemas = OPENAPI_DOCUMENT.components.schemas as unknown as Record<string, Schema>;
const resolve = (s: Schema): Schema => (typeof s.$ref === 'string' ? resolve(schemas[s.$ref.split('/').pop()!]!) : s);

/** Values the schema accepts (almost always: a generated object may still miss an anyOf, the document judges). */
function valid(schema: Schema): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  if (Array.isArray(s.anyOf) && s.type !== 'object')
    return fc.oneof(...(s.anyOf as Schema[]).map((alt) => valid({ ...s, anyOf: undefined, ...alt })));
  if (s.const !== undefined) return fc.constant(s.const);
  switch (s.type) {
    case 'string':
      if (typeof s.pattern === 'string') return fc.stringMatching(new RegExp(s.pattern));
      return fc.string({
        unit: 'grapheme',
        minLength: Number(s.minLength ?? 0),
        maxLength: Math.min(Number(s.maxLength ?? 40), 40),
      });
    case 'integer':
      return fc.integer({ min: Number(s.minimum ?? -1e6), max: Number(s.maximum ?? 1e6) });
    case 'array':
      return fc.uniqueArray(valid(s.items as Schema), { maxLength: Math.min(Number(s.maxItems ?? 4), 4) });
    case 'object': {
      if (s.properties && s.additionalProperties === false) {
        const props = s.properties as Record<string, Schema>;
        const model = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, valid(v)]));
        return fc.record(model, { requiredKeys: (s.required as string[] | undefined) ?? [] });
      }
      const keys = s.propertyNames
        ? (valid({ type: 'string', ...(s.propertyNames as Schema) }) as fc.Arbitrary<string>)
        : fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });
      return fc.dictionary(keys, valid(s.additionalProperties as Schema), {
        maxKeys: Math.min(Number(s.maxProperties ?? 4), 4),
      });
    }
    default:
      throw new Error(`no generator for ${JSON.stringify(s)}`);
  }
}

const request = schemas.AllocateRequest!;
const fields = Object.keys(request.properties as object);
const fieldSchema = (name: string) => resolve((request.properties as Record<string, Schema>)[name]!);

/** Valid bodies, biased to the fleet that exists and to short waits (the document allows 5 minutes). */
const validBody = (valid(request) as fc.Arbitrary<Record<string, unknown>>).chain((body) =>
  fc.record({ fleetF: fc.boolean(), wait: fc.integer({ min: 0, max: 3 }) }).map(({ fleetF, wait }) => {
    const out = { ...body };
    const labels = Object.keys((out.match_labels as object | undefined) ?? {}).length;
    if (fleetF || (!out.fleet && labels === 0)) out.fleet = 'f';
    if (out.wait_ms !== undefined) out.wait_ms = wait;
    return out;
  }),
);

const oddValues: unknown[] = [null, true, false, 0, -1, 1.5, 1e300, '', 'x', [], [1], {}, { a: 1 }, '\u0000', '😀'];

/** A replacement for one field: wrong types, lengths past the limits, unicode, nesting. */
function mutation(name: string): fc.Arbitrary<unknown> {
  const s = fieldSchema(name);
  const long = Number(s.maxLength ?? 300);
  const options: fc.Arbitrary<unknown>[] = [
    fc.constantFrom(...oddValues),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.constant('x'.repeat(long + 1)),
    fc.constant('😀'.repeat(Math.min(long, 5000))),
    fc.integer(),
    fc.double(),
  ];
  if (s.type === 'object' && !s.properties) {
    const value = s.additionalProperties as Schema;
    options.push(
      fc.dictionary(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 20 })),
      fc.dictionary(fc.constantFrom('a', 'b', '__proto__', 'constructor'), fc.constantFrom(...oddValues)),
      fc.constant(
        Object.fromEntries(Array.from({ length: Number(s.maxProperties ?? 64) + 1 }, (_, i) => [`k${i}`, 'v'])),
      ),
      fc.constant({ k: 'y'.repeat(Number(value.maxLength ?? 100) + 1) }),
      fc.constant({ k: '😀'.repeat(Number(value.maxLength ?? 100)) }),
      fc.constant({ ['é'.repeat(128)]: 'v' }),
      fc.constant({ ['😀'.repeat(128)]: 'v' }),
    );
  }
  if (s.type === 'object' && s.properties)
    options.push(
      fc.record({
        regions: fc.oneof(
          fc.array(fc.string({ unit: 'binary', maxLength: 70 }), { maxLength: 20 }),
          fc.constant(Array.from({ length: 17 }, (_, i) => `r${i}`)),
          fc.constant(['eu', 'eu']),
        ),
        client_region: fc.oneof(fc.string({ unit: 'binary', maxLength: 70 }), fc.constantFrom(...oddValues)),
      }),
      fc.dictionary(fc.string({ maxLength: 8 }), fc.constantFrom(...oddValues)),
    );
  if (s.type === 'integer') options.push(fc.constantFrom(-1, 300_001, 2 ** 53, -0, 0.5, '5'));
  return fc.oneof(...options);
}

type Case =
  | { kind: 'valid'; body: Record<string, unknown> }
  | { kind: 'mutated'; body: Record<string, unknown>; field: string; how: 'replaced' | 'missing' | 'extra' }
  | { kind: 'malformed'; text: string }
  | { kind: 'content-type'; body: Record<string, unknown>; contentType: string }
  | { kind: 'path'; method: string; path: string };

const mutated: fc.Arbitrary<Case> = fc.oneof(
  fc.tuple(validBody, fc.constantFrom(...fields)).chain(([body, field]) =>
    mutation(field).map((value): Case => ({
      kind: 'mutated',
      body: { ...body, [field]: value },
      field,
      how: 'replaced',
    })),
  ),
  fc.tuple(validBody, fc.constantFrom(...fields)).map(([body, field]): Case => {
    const out = { ...body };
    delete out[field];
    return { kind: 'mutated', body: out, field, how: 'missing' };
  }),
  fc
    .tuple(
      validBody,
      fc.oneof(
        fc.constantFrom('__proto__', 'constructor', 'compositionId', 'matchLabels', 'wait', 'FLEET', ''),
        fc.string({ unit: 'binary', maxLength: 20 }),
      ),
      fc.constantFrom(...oddValues),
    )
    .filter(([, key]) => !fields.includes(key))
    .map(([body, key, value]): Case => {
      const out = { ...body };
      Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
      return { kind: 'mutated', body: out, field: key, how: 'extra' };
    }),
);

const malformed: fc.Arbitrary<Case> = fc.oneof(
  fc.tuple(validBody, fc.nat()).map(([body, n]): Case => {
    const text = JSON.stringify(body);
    return { kind: 'malformed', text: text.slice(0, n % text.length) };
  }),
  fc
    .tuple(validBody, fc.nat(), fc.constantFrom('"', '{', '}', ',', ':', '\\', '\u0000', 'x', ']'))
    .map(([body, n, ch]): Case => {
      const text = JSON.stringify(body);
      const at = n % (text.length + 1);
      return { kind: 'malformed', text: text.slice(0, at) + ch + text.slice(at) };
    }),
  fc.string({ unit: 'binary', maxLength: 80 }).map((text): Case => ({ kind: 'malformed', text })),
  fc
    .constantFrom('', 'null', '1', '"x"', '[]', 'true', '{"a":', '\uFEFF{}', '{"fleet":"f"}{}')
    .map((text): Case => ({ kind: 'malformed', text })),
);

const contentType: fc.Arbitrary<Case> = fc
  .tuple(
    validBody,
    fc.constantFrom(
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json; charset=utf-16',
      'application/json; charset=latin1',
      'application/jsonx',
      'json',
      '*/*',
    ),
  )
  .map(([body, ct]): Case => ({ kind: 'content-type', body, contentType: ct }));

const segment = fc.oneof(
  fc.constantFrom(
    'v1',
    'allocations',
    'fleets',
    'f',
    'c1',
    'openapi.json',
    '.',
    '%2e',
    '%00',
    '%ZZ',
    '%E0%A4%A',
    '%2F',
    '',
  ),
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/),
  fc.string({ unit: 'binary', maxLength: 30 }).map(encodeURIComponent),
  fc.constant('x'.repeat(300)),
);
const path: fc.Arbitrary<Case> = fc
  .tuple(
    fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'),
    fc.constantFrom('/v1/allocations', '/v1/fleets', '/v1', '', '/V1/ALLOCATIONS', '/v1/allocations/c1'),
    fc.array(segment, { maxLength: 3 }),
    fc.oneof(
      fc.constant(''),
      fc.constantFrom('?fleet=f', '?fleet=', '?fleet=f&fleet=g', '?limit=1', '?fleet=%ZZ', '?a[b]=1', '?'),
      fc.string({ maxLength: 20 }).map((q) => `?${encodeURIComponent(q)}=${encodeURIComponent(q)}`),
    ),
  )
  .map(([method, prefix, segments, query]): Case => ({
    kind: 'path',
    method,
    path: [prefix, ...segments].join('/') + query,
  }));

const cases: fc.Arbitrary<Case> = fc.oneof(
  { weight: 3, arbitrary: validBody.map((body): Case => ({ kind: 'valid', body })) },
  { weight: 6, arbitrary: mutated },
  { weight: 2, arbitrary: malformed },
  { weight: 1, arbitrary: contentType },
  { weight: 3, arbitrary: path },
);

const topField = (field: string) => field.split(/[.[]/)[0]!;

describe('REST fuzzing (cases generated from the OpenAPI document)', () => {
  let store: MemoryStore;
  let served: Awaited<ReturnType<typeof serveRouter>>;
  let rest: RestTestClient;

  beforeAll(async () => {
    store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    for (let i = 0; i < 20; i++) {
      await store.addServer(newServer(`s${i}`, 'f', { labels: i % 2 ? { zone: 'a' } : {} }));
      await store.updateServer(`s${i}`, { event: 'Healthy' });
    }
    const router = restRouter({
      allocation: allocationService(store, silentLogger),
      fleet: fleetService({
        store,
        fleetInfo: () => ({ smelterCommand: 'emulator', emulated: true }),
        logger: silentLogger,
      }),
    });
    // What the gateway's later routes answer for paths that are not the mirror's.
    served = await serveRouter(router, (app) =>
      app.use(
        (_req, res) =>
          void res.status(404).json({ error: { code: 'NOT_FOUND', message: 'path: not found', field: 'path' } }),
      ),
    );
    rest = new RestTestClient(served.url);
  });

  afterAll(async () => {
    await served.close();
    await store.close();
  });

  it(`${RUNS} cases: no 5xx, every 4xx names the field, every response as documented`, async () => {
    const counts: Record<string, number> = {};
    const statuses: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(cases, async (c) => {
        let res: RestCall;
        switch (c.kind) {
          case 'valid':
          case 'mutated':
            res = await rest.call('POST', '/v1/allocations', { body: c.body });
            break;
          case 'malformed':
            res = await rest.call('POST', '/v1/allocations', { body: c.text });
            break;
          case 'content-type':
            res = await rest.call('POST', '/v1/allocations', { body: c.body, contentType: c.contentType });
            break;
          case 'path':
            res = await rest.call(c.method, c.path, c.method === 'POST' || c.method === 'PUT' ? { body: {} } : {});
            break;
        }
        const key = `${c.kind}${c.kind === 'mutated' ? `:${c.how}` : ''}`;
        counts[key] = (counts[key] ?? 0) + 1;
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        expect(res.status).toBeLessThan(500);
        if (c.kind === 'valid') expect(res.requestProblems).toEqual([]);
        const bodyless = res.status === 204 || (c.kind === 'path' && c.method === 'HEAD');
        if (res.status >= 400 && !bodyless) {
          const error = res.body.error as { code: string; message: string; field?: string };
          expect(error.message).not.toBe('');
          if ([400, 404, 405, 413, 415].includes(res.status)) expect(error.field).toBeTruthy();
          if (res.status !== 404) expect(error.message).toContain(topField(error.field ?? ''));
          if (c.kind === 'malformed' && res.status === 400 && !isJsonObject(c.text)) expect(error.field).toBe('body');
          if (c.kind === 'content-type') expect(res.status).toBe(415);
          if (c.kind === 'mutated' && res.status === 400 && res.requestValid === false) {
            const named = topField(error.field!);
            const either = ['fleet', 'match_labels'];
            if (c.how === 'extra') expect(error.field).toBe(c.field === '' ? '""' : c.field);
            else if (either.includes(c.field)) expect(either).toContain(named);
            else expect(named).toBe(c.field);
          }
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(
      `REST fuzz: ${total} cases (seed ${SEED}) ${JSON.stringify(counts)}; statuses ${JSON.stringify(statuses)}`,
    );
    expect(total).toBeGreaterThanOrEqual(1000);
    expect(statuses['200']).toBeGreaterThan(0);
    // Still answering.
    expect((await rest.call('GET', '/openapi.json')).status).toBe(200);
  }, 300_000);
});

const AUTH_RUNS = 300;
const TOKEN = 'Zm9vYmFyLXRva2VuLTEyMw';

describe('REST fuzzing of caller authentication', () => {
  it(`${AUTH_RUNS} Authorization headers: only the listed token passes; the rest get 401 naming authorization`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rest-fuzz-auth-'));
    writeFileSync(join(dir, 'tokens'), `backend:${TOKEN}\n`);
    const auth = await CallerAuth.create({ tokensFile: join(dir, 'tokens'), pollIntervalMs: 60_000 });
    const store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    const served = await serveRouter(
      restRouter({
        allocation: allocationService(store, silentLogger),
        fleet: fleetService({
          store,
          fleetInfo: () => ({ smelterCommand: '', emulated: false }),
          logger: silentLogger,
        }),
        auth,
      }),
    );
    const rest = new RestTestClient(served.url);
    // Header values fetch can send: visible ASCII and spaces.
    const ascii = fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 80,
    });
    const header = fc.oneof(
      ascii,
      ascii.map((t) => `Bearer ${t}`),
      fc.constantFrom('Bearer', 'Bearer ', `bearer ${TOKEN}`, `Bearer  ${TOKEN}`, `Basic ${TOKEN}`, `Bearer ${TOKEN}x`),
      fc.constantFrom(`Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN.toLowerCase()}`, `${TOKEN}`),
    );
    let passed = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          header,
          fc.constantFrom('GET /v1/fleets', 'GET /v1/allocations', 'DELETE /v1/allocations/c1'),
          async (h, call) => {
            const [method, path] = call.split(' ') as [string, string];
            const res = await rest.call(method, path, { headers: { authorization: h } });
            const accepted = /^bearer +(\S+) *$/i.exec(h.trim())?.[1] === TOKEN;
            if (accepted) {
              passed++;
              expect(res.status).not.toBe(401);
            } else {
              expect(res.status).toBe(401);
              expect(res.headers.get('www-authenticate')).toBe('Bearer');
              expect(res.body.error).toMatchObject({ code: 'UNAUTHENTICATED', field: 'authorization' });
              // Never echoes what was sent.
              if (h.length > 8) expect(res.text).not.toContain(h);
            }
          },
        ),
        { seed: SEED, numRuns: AUTH_RUNS, endOnFailure: true },
      );
    } finally {
      await served.close();
      await store.close();
      auth.close();
      rmSync(dir, { recursive: true, force: true });
    }
    console.log(`REST auth fuzz: ${AUTH_RUNS} cases (seed ${SEED}), ${passed} with the listed token`);
    expect(passed).toBeGreaterThan(0);
  }, 120_000);
});

function isJsonObject(text: string): boolean {
  try {
    // A UTF-8 byte order mark is allowed (and dropped) before JSON.
    const v: unknown = JSON.parse(text.replace(/^\uFEFF/, ''));
    return typeof v === 'object' && v !== null;
  } catch {
    return false;
  }
}
