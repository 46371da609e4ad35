import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startEmulator, type EmulatorHandle } from './emulator.js';
import { sample, spec, specPath, validator, variants, type Schema } from './spec.js';

const sharedSpec = fileURLToPath(new URL('../../../../shared/smelter/openapi_specification.json', import.meta.url));

type Op = {
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
};
const ops = Object.entries(spec.paths).flatMap(([path, methods]) =>
  Object.entries(methods as Record<string, Op>).map(([method, op]) => ({ path, method, op })),
);
const apiError = validator({ $ref: '#/components/schemas/ApiError' });

let seq = 0;
const fresh = (path: string) => path.replace(/\{[^}]+\}/g, () => `id${++seq}`);

describe('Smelter emulator', () => {
  let emu: EmulatorHandle;
  const call = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(`${emu.url}${path}`, {
      method: method.toUpperCase(),
      headers: body === undefined ? {} : { 'content-type': contentType },
      ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  const expectError = (
    r: { status: number; body?: Record<string, unknown> },
    status: number,
    code: string,
    message?: RegExp,
  ) => {
    expect(r.status).toBe(status);
    expect(apiError(r.body)).toBe(true);
    expect(r.body).toMatchObject({ error_code: code, http_status_code: status });
    if (message) expect(r.body?.message).toMatch(message);
  };

  beforeAll(async () => {
    emu = await startEmulator({ apiPort: 0, whipWhepPort: 0, rtmpPort: 0, log: () => {} });
  });
  afterAll(async () => {
    await emu.close();
  });

  it('ships the spec unchanged', () => {
    if (!existsSync(sharedSpec)) {
      console.warn(`skipped: ${sharedSpec} is not beside this checkout`);
      return;
    }
    expect(readFileSync(specPath)).toEqual(readFileSync(sharedSpec));
  });

  describe('request corpus derived from the spec', () => {
    const jsonRoutes = ops.filter((o) => o.op.requestBody?.content['application/json']);

    // A route the emulator lacked would get axum's bare 404 (or 405); Smelter's own errors carry a body.
    it.each(ops.map((o) => [`${o.method} ${o.path}`, o] as const))('serves %s', async (_, o) => {
      const r = await fetch(`${emu.url}${fresh(o.path)}`, { method: o.method.toUpperCase() });
      const body = await r.text();
      expect(r.status).not.toBe(405);
      if (r.status === 404) expect(body).not.toBe('');
    });

    // One valid body per variant of each body schema (every input and output `type`), checked against the spec first.
    const validCases = jsonRoutes.flatMap(({ path, method, op }) => {
      const schema = op.requestBody!.content['application/json']!.schema;
      const tagged = [...variants(schema)];
      const bodies =
        tagged.length > 0 ? tagged.map(([tag, v]) => [tag, sample(v)] as const) : [['-', sample(schema)] as const];
      return bodies.map(([tag, body]) => ({ path, method, op, tag, body }));
    });

    it.each(validCases.map((c) => [`${c.method} ${c.path} ${c.tag}`, c] as const))(
      'accepts a valid body: %s',
      async (_, c) => {
        const schema = c.op.requestBody!.content['application/json']!.schema;
        expect(validator(schema)(c.body)).toBe(true);
        const path = fresh(c.path);
        // Routes that act on an existing entity get one registered first.
        const kind =
          /\/api\/(input|output|image|shader|web-renderer)\/[^/]+\/(unregister|update|request_keyframe)$/.exec(c.path);
        if (kind) {
          const register = ops.find((o) => o.path.startsWith(`/api/${kind[1]}/`) && o.path.endsWith('/register'))!;
          const regSchema = register.op.requestBody!.content['application/json']!.schema;
          const regBody =
            kind[1] === 'output'
              ? sample(variants(regSchema).get('mp4')!)
              : sample([...variants(regSchema).values()][0] ?? regSchema);
          expect(
            (await call('post', path.replace(/\/(unregister|update|request_keyframe)$/, '/register'), regBody)).status,
          ).toBe(200);
        }
        const r = await call(c.method, path, c.body);
        expect(r.status).toBe(200);
        expect(validator(c.op.responses['200']!.content!['application/json']!.schema)(r.body)).toBe(true);
      },
    );

    const invalidCases = jsonRoutes.flatMap(({ path, method, op }) => {
      const schema = op.requestBody!.content['application/json']!.schema;
      const out: [string, { path: string; method: string; body: string; message: RegExp }][] = [
        [
          `${method} ${path} malformed JSON`,
          { path, method, body: '{"type":', message: /parse the request body as JSON/ },
        ],
        [`${method} ${path} not an object`, { path, method, body: '[1,2]', message: /deserialize/ }],
      ];
      const tagged = [...variants(schema)];
      if (tagged.length > 0) {
        out.push([`${method} ${path} missing type`, { path, method, body: '{}', message: /missing field `type`/ }]);
        out.push([
          `${method} ${path} unknown type`,
          { path, method, body: '{"type":"carrier_pigeon"}', message: /unknown variant `carrier_pigeon`/ },
        ]);
        for (const [tag, v] of tagged) {
          const body = sample(v) as Record<string, unknown>;
          const required = Object.keys(body).find((k) => k !== 'type');
          if (required) {
            delete body[required];
            out.push([
              `${method} ${path} ${tag} without ${required}`,
              { path, method, body: JSON.stringify(body), message: new RegExp(`missing field \`${required}\``) },
            ]);
          }
          out.push([
            `${method} ${path} ${tag} with an unknown field`,
            {
              path,
              method,
              body: JSON.stringify({ ...(sample(v) as object), no_such_field: 1 }),
              message: /unknown field `no_such_field`/,
            },
          ]);
        }
      }
      return out;
    });

    it.each(invalidCases)('rejects like Smelter: %s', async (_, c) => {
      expectError(await call(c.method, fresh(c.path), c.body), 400, 'MALFORMED_REQUEST', c.message);
    });

    it('rejects a JSON body without the JSON content type', async () => {
      expectError(
        await call('post', '/api/input/x/unregister', '{}', 'text/plain'),
        400,
        'MALFORMED_REQUEST',
        /Content-Type/,
      );
    });

    it('requires a body on unregister', async () => {
      await call(
        'post',
        '/api/image/img-u/register',
        sample(
          [...variants({ $ref: '#/components/schemas/ImageSpec' }).values()][0] ?? {
            $ref: '#/components/schemas/ImageSpec',
          },
        ),
      );
      expectError(await call('post', '/api/input/x/unregister'), 400, 'MALFORMED_REQUEST');
    });

    it('takes fonts as multipart, not JSON', async () => {
      const form = new FormData();
      form.append('file', new Blob([Buffer.from('font')]), 'font.ttf');
      expect((await fetch(`${emu.url}/api/font/register`, { method: 'POST', body: form })).status).toBe(200);
      expectError(await call('post', '/api/font/register', {}), 400, 'MALFORMED_REQUEST');
    });

    it('answers unknown paths 404 and wrong methods 405, with no body, as axum does', async () => {
      expect(await call('get', '/api/nothing')).toEqual({ status: 404, body: undefined });
      expect(await call('get', '/api/start')).toEqual({ status: 405, body: undefined });
    });
  });

  it('answers /status and /stats in the spec shapes, with what is registered', async () => {
    const input = sample(variants({ $ref: '#/components/schemas/RegisterInput' }).get('rtp_stream')!);
    await call('post', '/api/input/cam-1/register', input);
    const status = await call('get', '/status');
    expect(validator({ $ref: '#/components/schemas/InstanceStatus' })(status.body)).toBe(true);
    expect(status.body).toMatchObject({
      instance_id: emu.instanceId,
      configuration: { api_port: emu.apiPort, whip_whep_server_port: emu.whipWhepPort },
    });
    expect(status.body?.inputs).toContainEqual({ input_id: 'cam-1', input_type: 'rtp_stream' });
    const stats = await call('get', '/stats');
    expect(validator({ $ref: '#/components/schemas/StatsReport' })(stats.body)).toBe(true);
    expect((stats.body?.inputs as Record<string, { type: string }>)['cam-1']?.type).toBe('rtp');
  });

  it('refuses duplicate ids (409) and unknown ids (404)', async () => {
    const input = sample(variants({ $ref: '#/components/schemas/RegisterInput' }).get('mp4')!);
    expect((await call('post', '/api/input/dup/register', input)).status).toBe(200);
    expectError(await call('post', '/api/input/dup/register', input), 409, 'INPUT_STREAM_ALREADY_REGISTERED');
    expectError(await call('post', '/api/input/ghost/unregister', {}), 404, 'INPUT_STREAM_NOT_FOUND');
    expectError(await call('post', '/api/output/ghost/unregister', {}), 404, 'OUTPUT_STREAM_NOT_FOUND');
  });

  describe('events on /ws', () => {
    const mp4Output = () => sample(variants({ $ref: '#/components/schemas/RegisterOutput' }).get('mp4')!);
    const whepOutput = () => sample(variants({ $ref: '#/components/schemas/RegisterOutput' }).get('whep_server')!);

    async function events() {
      const ws = new WebSocket(`${emu.url.replace('http', 'ws')}/ws`);
      const frames: Record<string, string>[] = [];
      const waiters: (() => void)[] = [];
      ws.on('message', (data) => {
        frames.push(JSON.parse(String(data)) as Record<string, string>);
        waiters.splice(0).forEach((w) => w());
      });
      await new Promise((r) => ws.once('open', r));
      const next = async (match: (f: Record<string, string>) => boolean) => {
        for (;;) {
          const found = frames.find(match);
          if (found) return found;
          await new Promise<void>((r) => waiters.push(r));
        }
      };
      return { ws, frames, next };
    }

    it('sends OUTPUT_DONE when an mp4 output is unregistered, never for a WHEP output', async () => {
      const { ws, frames, next } = await events();
      await call('post', '/api/output/whep-1/register', whepOutput());
      await call('post', '/api/output/mp4-1/register', mp4Output());
      await call('post', '/api/output/whep-1/unregister', {});
      await call('post', '/api/output/mp4-1/unregister', {});
      await next((f) => f.type === 'OUTPUT_DONE');
      // Frames arrive in order: had the WHEP output sent one, it would be first.
      expect(frames.filter((f) => f.type === 'OUTPUT_DONE')).toEqual([{ type: 'OUTPUT_DONE', output_id: 'mp4-1' }]);
      expect(Object.values(frames[0]!).every((v) => typeof v === 'string')).toBe(true);
      ws.close();
    });

    it('sends OUTPUT_DONE when a scheduled unregister comes due; the output stays listed until then', async () => {
      await call('post', '/api/reset', {});
      const { ws, next } = await events();
      await call('post', '/api/output/mp4-s/register', mp4Output());
      await call('post', '/api/start', {});
      await call('post', '/api/output/mp4-s/unregister', { schedule_time_ms: 150 });
      expect((await call('get', '/status')).body?.outputs).toEqual([{ output_id: 'mp4-s', output_type: 'mp4' }]);
      await next((f) => f.type === 'OUTPUT_DONE' && f.output_id === 'mp4-s');
      expect((await call('get', '/status')).body?.outputs).toEqual([]);
      ws.close();
    });

    it('keeps an ended output listed until it is unregistered, and reports critical errors', async () => {
      const { ws, next } = await events();
      await call('post', '/api/output/mp4-e/register', mp4Output());
      await call('post', '/api/output/mp4-x/register', mp4Output());
      await call('post', '/_emulator/output/mp4-e/end', {});
      await call('post', '/_emulator/output/mp4-x/error', { severity: 'critical' });
      await next((f) => f.type === 'OUTPUT_DONE' && f.output_id === 'mp4-e');
      expect(await next((f) => f.type === 'OUTPUT_ERROR')).toMatchObject({ output_id: 'mp4-x', severity: 'critical' });
      const listed = ((await call('get', '/status')).body?.outputs as { output_id: string }[]).map((o) => o.output_id);
      expect(listed).toEqual(expect.arrayContaining(['mp4-e', 'mp4-x']));
      ws.close();
    });

    it('reports inputs delivered and playing after start', async () => {
      await call('post', '/api/reset', {});
      const { ws, next } = await events();
      await call(
        'post',
        '/api/input/in-1/register',
        sample(variants({ $ref: '#/components/schemas/RegisterInput' }).get('mp4')!),
      );
      await call('post', '/api/start', {});
      expect(await next((f) => f.type === 'VIDEO_INPUT_PLAYING')).toEqual({
        type: 'VIDEO_INPUT_PLAYING',
        input_id: 'in-1',
      });
      ws.close();
    });
  });

  it('reset drops every input and output', async () => {
    await call(
      'post',
      '/api/input/r-1/register',
      sample(variants({ $ref: '#/components/schemas/RegisterInput' }).get('mp4')!),
    );
    await call('post', '/api/start', {});
    expect((await call('post', '/api/reset', {})).status).toBe(200);
    expect((await call('get', '/status')).body).toMatchObject({ inputs: [], outputs: [] });
    expect((await call('post', '/api/start', {})).status).toBe(200);
  });

  it('guards WHIP with the input bearer token', async () => {
    const whip = sample(variants({ $ref: '#/components/schemas/RegisterInput' }).get('whip_server')!);
    const r = await call('post', '/api/input/pub-1/register', whip);
    expect(r.body).toEqual({ bearer_token: expect.any(String), endpoint_route: '/whip/pub-1' });
    const whipUrl = `http://127.0.0.1:${emu.whipWhepPort}/whip/pub-1`;
    const offer = { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' };
    expect((await fetch(whipUrl, offer)).status).toBe(401);
    const ok = await fetch(whipUrl, {
      ...offer,
      headers: { ...offer.headers, authorization: `Bearer ${String(r.body!.bearer_token)}` },
    });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('location')).toMatch(/^\/whip\/pub-1\/\w+$/);
    expect((await fetch(`http://127.0.0.1:${emu.whipWhepPort}/status`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${emu.whipWhepPort}/whip/nobody`, offer)).status).toBe(404);
  });

  it('answers PIPELINE_DOWN to everything after a failed reset', async () => {
    const other = await startEmulator({ apiPort: 0, whipWhepPort: 0, rtmpPort: 0, log: () => {} });
    try {
      await fetch(`${other.url}/_emulator/fail-next-reset`, { method: 'POST' });
      const reset = await fetch(`${other.url}/api/reset`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(reset.status).toBe(500);
      const start = await fetch(`${other.url}/api/start`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(await start.json()).toMatchObject({ error_code: 'PIPELINE_DOWN', http_status_code: 500 });
    } finally {
      await other.close();
    }
  });
});
