import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { request, type IncomingHttpHeaders } from 'node:http';
import type { Allocation } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { startEmulator, type EmulatorHandle } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, newServer, recordingLogger } from '@smelter-fleet/testing';
import express from 'express';
import { WebSocket } from 'ws';
import { startGateway, type Gateway, type GatewayOptions } from './gateway.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json: () => { error?: { code: string; message: string; field?: string } } & Record<string, unknown>;
}

/** A raw HTTP call (fetch would normalise `..` away before sending). */
function call(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(base);
    const options = { hostname, port, path, method: init.method ?? 'GET', headers: init.headers };
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        const body = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
      });
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(init.body);
  });
}

/** Resolves on the next event `hook` is told of that `match` accepts. */
function nextEvent<T>(subscribe: (fn: (e: T) => void) => () => void, match: (e: T) => boolean): Promise<T> {
  return new Promise((resolve) => {
    const off = subscribe((e) => {
      if (match(e)) {
        off();
        resolve(e);
      }
    });
  });
}

type Seen = { method: string; url: string; headers: IncomingHttpHeaders };
type WsEvent = { type: 'open' | 'message' | 'close'; data?: string };

describe('gateway', () => {
  let store: MemoryStore;
  let emulators: EmulatorHandle[];
  let gateways: Gateway[];
  let gw: Gateway;
  let seen: Seen[];
  const requestListeners = new Set<(e: Seen) => void>();
  const wsListeners = new Set<(e: WsEvent) => void>();
  const onRequest = (fn: (e: Seen) => void) => (requestListeners.add(fn), () => requestListeners.delete(fn));
  const onWs = (fn: (e: WsEvent) => void) => (wsListeners.add(fn), () => wsListeners.delete(fn));
  let a1: Allocation;
  let a2: Allocation;

  async function addEmulatorServer(name: string): Promise<EmulatorHandle> {
    const emulator = await startEmulator({
      apiPort: 0,
      whipWhepPort: 0,
      rtmpPort: 0,
      log: () => {},
      onRequest: (r) => {
        seen.push(r);
        for (const l of requestListeners) l(r);
      },
      onWs: (e) => {
        for (const l of wsListeners) l(e);
      },
    });
    emulators.push(emulator);
    await store.addServer(
      newServer(name, 'f', { ports: { api: emulator.apiPort, whip_whep: emulator.whipWhepPort, rtmp: 0 } }),
    );
    await store.updateServer(name, { event: 'Healthy' });
    return emulator;
  }

  async function gateway(options: Partial<GatewayOptions> = {}): Promise<Gateway> {
    const g = await startGateway({ store, ...options });
    gateways.push(g);
    return g;
  }

  const base = (id: string) => `/v1/compositions/${encodeURIComponent(id)}/smelter`;
  const bearer = (a: Allocation) => ({ authorization: `Bearer ${a.token}` });

  beforeEach(async () => {
    store = new MemoryStore();
    emulators = [];
    gateways = [];
    seen = [];
    requestListeners.clear();
    wsListeners.clear();
    await store.putFleet(fleetSpec('f'));
    await addEmulatorServer('f-1');
    a1 = await store.allocate({ fleet: 'f', compositionId: 'room:1', matchLabels: {}, metadata: {} });
    await addEmulatorServer('f-2');
    a2 = await store.allocate({ fleet: 'f', compositionId: 'c2', matchLabels: {}, metadata: {} });
    gw = await gateway();
  });

  afterEach(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all(emulators.map((e) => e.close()));
    await store.close();
  });

  const emulatorOf = (a: Allocation) => emulators.find((e) => e.apiPort === a.ports.api)!;

  it("forwards to the composition's own Smelter, without the Authorization header", async () => {
    const r1 = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    expect(r1.status).toBe(200);
    expect(r1.json().instance_id).toBe(emulatorOf(a1).instanceId);
    const r2 = await call(gw.url, `${base('c2')}/status?verbose=1`, { headers: bearer(a2) });
    expect(r2.json().instance_id).toBe(emulatorOf(a2).instanceId);
    expect(seen.map((s) => s.url)).toEqual(['/status', '/status?verbose=1']);
    for (const s of seen) {
      expect(s.headers.authorization).toBeUndefined();
      expect(s.headers['x-forwarded-for']).toBe('127.0.0.1');
    }
  });

  it('forwards POST bodies and Smelter error answers as they are', async () => {
    const body = JSON.stringify({ type: 'rtp_stream', port: 9100, video: { decoder: 'ffmpeg_h264' } });
    const headers = { ...bearer(a1), 'content-type': 'application/json' };
    const ok = await call(gw.url, `${base('room:1')}/api/input/in%201/register`, { method: 'POST', headers, body });
    expect(ok.status).toBe(200);
    expect(ok.json()).toEqual({ port: 9100 });
    const again = await call(gw.url, `${base('room:1')}/api/input/in%201/register`, { method: 'POST', headers, body });
    expect(again.status).toBe(409);
    expect(again.json()).toMatchObject({ error_code: 'INPUT_STREAM_ALREADY_REGISTERED' });
    const status = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    expect(status.json().inputs).toEqual([{ input_id: 'in 1', input_type: 'rtp_stream' }]);
  });

  describe('refuses, forwarding nothing', () => {
    const cases: [string, () => Record<string, string>, number, string][] = [
      ['no Authorization header', () => ({}), 401, 'UNAUTHENTICATED'],
      ['a Basic header', () => ({ authorization: 'Basic dXNlcjpwdw==' }), 401, 'UNAUTHENTICATED'],
      ['an empty Bearer', () => ({ authorization: 'Bearer ' }), 401, 'UNAUTHENTICATED'],
      ['two tokens', () => ({ authorization: `Bearer ${a1.token} ${a1.token}` }), 401, 'UNAUTHENTICATED'],
      ['a wrong token', () => ({ authorization: `Bearer ${a1.token.slice(0, -1)}x` }), 403, 'PERMISSION_DENIED'],
      ['a shorter token', () => ({ authorization: `Bearer ${a1.token.slice(0, 10)}` }), 403, 'PERMISSION_DENIED'],
      ["another composition's token", () => bearer(a2), 403, 'PERMISSION_DENIED'],
    ];
    for (const [what, headers, status, code] of cases)
      it(`${what} -> ${status}`, async () => {
        for (const [method, body] of [
          ['GET', undefined],
          ['POST', '{}'],
        ] as const) {
          const r = await call(gw.url, `${base('room:1')}/${method === 'GET' ? 'status' : 'api/start'}`, {
            method,
            headers: { ...headers(), 'content-type': 'application/json' },
            body,
          });
          expect(r.status).toBe(status);
          expect(r.headers['content-type']).toBe('application/json');
          expect(r.json().error?.code).toBe(code);
          if (status === 401) expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
          expect(r.body).not.toContain(a1.token);
        }
        expect(seen).toEqual([]);
      });

    it('an unknown composition -> 403, the same answer as a wrong token', async () => {
      const r = await call(gw.url, `${base('nobody')}/status`, { headers: bearer(a1) });
      expect(r.status).toBe(403);
      expect(r.json().error?.code).toBe('PERMISSION_DENIED');
      expect(seen).toEqual([]);
    });

    it('a released composition -> 403 at once', async () => {
      expect((await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) })).status).toBe(200);
      await store.release('room:1');
      const r = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
      expect(r.status).toBe(403);
      expect(seen).toHaveLength(1);
    });

    it('a composition whose server failed -> 403', async () => {
      await store.updateServer(a1.serverName, { event: 'HealthFailed', reason: 'test' });
      const r = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
      expect(r.status).toBe(403);
      expect(seen).toEqual([]);
    });

    it('a composition whose server no longer holds it -> 403, even while the allocation record lives', async () => {
      // Drained, then recycled to Ready: the store still has the allocation, the server serves nobody.
      await store.updateServer(a1.serverName, { event: 'Drain' });
      await store.updateServer(a1.serverName, { event: 'Recycle' });
      expect(await store.getAllocation('room:1')).toBeDefined();
      const r = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
      expect(r.status).toBe(403);
      expect(r.json().error?.message).toMatch(/no longer served: its server "f-1" is Ready/);
      expect(seen).toEqual([]);
    });

    it('path escapes -> 400 naming the field', async () => {
      for (const path of [
        `${base('room:1')}/../../c2/smelter/status`,
        `${base('room:1')}/%2e%2e/%2e%2e/c2/smelter/status`,
        `${base('room:1')}/api%2F..%2F..%2Fstatus`,
        `${base('room:1')}/a\\..\\status`,
        `/v1/compositions/..%2Fc2/smelter/status`,
        `/v1/compositions/c2%2F..%2Froom%3A1/smelter/status`,
      ]) {
        const r = await call(gw.url, path, { headers: bearer(a2) });
        expect(r.status).toBe(400);
        expect(r.json().error).toMatchObject({ code: 'INVALID_ARGUMENT' });
        expect(r.json().error?.field).toMatch(/^(path|composition_id)$/);
      }
      expect(seen).toEqual([]);
    });
  });

  it('answers 404 as JSON for URLs that are not routes, and serves extraRoutes', async () => {
    const router = express.Router();
    router.get('/hello', (_req, res) => void res.json({ hello: 'world' }));
    const withRoutes = await gateway({ extraRoutes: router });
    expect((await call(withRoutes.url, '/hello')).json()).toEqual({ hello: 'world' });
    const r = await call(withRoutes.url, '/v1/compositions/room:1');
    expect(r.status).toBe(404);
    expect(r.json().error?.code).toBe('NOT_FOUND');
  });

  it('logs refusals and upstream failures, never a token', async () => {
    const logger = recordingLogger();
    const logged = await gateway({ logger, requestTimeoutMs: 100 });
    await call(logged.url, `${base('room:1')}/status`, { headers: bearer(a2) });
    await call(logged.url, `${base('room:1')}/status`, { headers: { authorization: `Bearer ${a1.token}x` } });
    await call(logged.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    emulatorOf(a2).hang();
    await call(logged.url, `${base('c2')}/status`, { headers: bearer(a2) });
    expect(logger.entries.filter((e) => e.msg === 'refused')).toHaveLength(2);
    expect(logger.entries.some((e) => e.msg === 'upstream timeout')).toBe(true);
    const text = JSON.stringify(logger.entries);
    for (const token of [a1.token, a2.token]) expect(text).not.toContain(token);
  });

  it('bound to every interface, names a reachable URL', async () => {
    const everywhere = await gateway({ host: '0.0.0.0' });
    expect(everywhere.url).toBe(`http://127.0.0.1:${everywhere.port}`);
    expect((await call(everywhere.url, `${base('room:1')}/status`, { headers: bearer(a1) })).status).toBe(200);
  });

  it('streams the request body: Smelter sees the request before the body is complete', async () => {
    const arrived = nextEvent(onRequest, (r) => r.url.startsWith('/api/input/'));
    const reply = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${gw.url}${base('room:1')}/api/input/slow/register`, {
        method: 'POST',
        headers: { ...bearer(a1), 'content-type': 'application/json' },
      });
      req.once('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.once('error', reject);
      req.write('{"type": "rtp_stream", "port": 9200,');
      // The rest of the body is sent only once Smelter has the request: a buffering proxy would deadlock here.
      void arrived.then(() => req.end(' "video": {"decoder": "ffmpeg_h264"}}'));
    });
    expect(await reply).toEqual({ status: 200, body: '{"port":9200}' });
  });

  it('refuses bodies over maxBodyBytes with 413', async () => {
    const small = await gateway({ maxBodyBytes: 1024 });
    const big = JSON.stringify({ type: 'rtp_stream', port: 9300, pad: 'x'.repeat(2000) });
    const declared = await call(small.url, `${base('room:1')}/api/input/big/register`, {
      method: 'POST',
      headers: { ...bearer(a1), 'content-type': 'application/json' },
      body: big,
    });
    expect(declared.status).toBe(413);
    expect(declared.json().error?.code).toBe('RESOURCE_EXHAUSTED');
    expect(seen).toEqual([]);

    // Chunked, so the size is only known while streaming.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(`${small.url}${base('room:1')}/api/input/big/register`, {
        method: 'POST',
        headers: { ...bearer(a1), 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      });
      req.once('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.once('error', reject);
      req.write(big.slice(0, 600));
      req.end(big.slice(600));
    });
    expect(chunked).toBe(413);
    const status = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    expect(status.json().inputs).toEqual([]);
    // A body just under the limit passes.
    const fits = await call(small.url, `${base('room:1')}/api/input/fits/register`, {
      method: 'POST',
      headers: { ...bearer(a1), 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'rtp_stream', port: 9301, pad: 'x'.repeat(900) }),
    });
    expect(fits.status).not.toBe(413);
  });

  it('answers 504 when Smelter does not answer within requestTimeoutMs', async () => {
    const impatient = await gateway({ requestTimeoutMs: 100 });
    emulatorOf(a1).hang();
    const r = await call(impatient.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    expect(r.status).toBe(504);
    expect(r.json().error?.code).toBe('DEADLINE_EXCEEDED');
    // The other composition is unaffected.
    expect((await call(impatient.url, `${base('c2')}/status`, { headers: bearer(a2) })).status).toBe(200);
  });

  it('answers 502 when Smelter is unreachable', async () => {
    await emulatorOf(a1).close();
    const r = await call(gw.url, `${base('room:1')}/status`, { headers: bearer(a1) });
    expect(r.status).toBe(502);
    expect(r.json().error?.code).toBe('UNAVAILABLE');
  });

  describe('WebSocket /ws', () => {
    function connect(g: Gateway, id: string, headers: Record<string, string>): Promise<WebSocket> {
      const ws = new WebSocket(`${g.url.replace('http', 'ws')}${base(id)}/ws`, { headers });
      return new Promise((resolve, reject) => {
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    }
    const closed = (ws: WebSocket) =>
      new Promise<{ code: number; reason: string }>((resolve) =>
        ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
      );
    function refused(g: Gateway, id: string, headers: Record<string, string>): Promise<number> {
      const ws = new WebSocket(`${g.url.replace('http', 'ws')}${base(id)}/ws`, { headers });
      return new Promise((resolve, reject) => {
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.once('open', () => reject(new Error('opened')));
        ws.on('error', () => {});
      });
    }

    it('relays frames both ways', async () => {
      const opened = nextEvent(onWs, (e) => e.type === 'open');
      const ws = await connect(gw, 'room:1', bearer(a1));
      await opened;
      expect(seen.find((s) => s.url === '/ws')?.headers.authorization).toBeUndefined();

      // Client -> Smelter.
      const got = nextEvent(onWs, (e) => e.type === 'message');
      ws.send('hello smelter');
      expect((await got).data).toBe('hello smelter');

      // Smelter -> client: events of an input registered and started through the gateway.
      const frames: Record<string, string>[] = [];
      const two = new Promise<void>((resolve) =>
        ws.on('message', (data) => {
          frames.push(JSON.parse(data.toString()) as Record<string, string>);
          if (frames.length === 2) resolve();
        }),
      );
      const headers = { ...bearer(a1), 'content-type': 'application/json' };
      const register = JSON.stringify({ type: 'rtp_stream', port: 9400, video: { decoder: 'ffmpeg_h264' } });
      await call(gw.url, `${base('room:1')}/api/input/in/register`, { method: 'POST', headers, body: register });
      await call(gw.url, `${base('room:1')}/api/start`, { method: 'POST', headers, body: '{}' });
      await two;
      expect(frames).toEqual([
        { type: 'VIDEO_INPUT_DELIVERED', input_id: 'in' },
        { type: 'VIDEO_INPUT_PLAYING', input_id: 'in' },
      ]);
      ws.close();
    });

    it('closing the client closes the Smelter side, and the other way round', async () => {
      const opened = nextEvent(onWs, (e) => e.type === 'open');
      const ws = await connect(gw, 'room:1', bearer(a1));
      await opened;
      const upstreamClosed = nextEvent(onWs, (e) => e.type === 'close');
      ws.close(1000, 'bye');
      await upstreamClosed;

      const ws2 = await connect(gw, 'room:1', bearer(a1));
      const clientClosed = closed(ws2);
      const drop = await call(emulatorOf(a1).url, '/_emulator/ws/drop', { method: 'POST' });
      expect(drop.status).toBe(200);
      expect((await clientClosed).code).toBe(1006);
    });

    it('is closed when the composition is released', async () => {
      const ws = await connect(gw, 'room:1', bearer(a1));
      const other = await connect(gw, 'c2', bearer(a2));
      const wsClosed = closed(ws);
      await store.release('room:1');
      expect(await wsClosed).toEqual({ code: 1008, reason: 'composition released' });
      expect(other.readyState).toBe(WebSocket.OPEN);
      other.close();
    });

    it("answers 502 when the composition's Smelter cannot be reached", async () => {
      await emulatorOf(a1).close();
      expect(await refused(gw, 'room:1', bearer(a1))).toBe(502);
    });

    it('answers 502 when Smelter drops the upgrade (it does for any path but /ws)', async () => {
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}${base('room:1')}/status`, { headers: bearer(a1) });
      ws.on('error', () => {});
      const outcome = await new Promise<string>((resolve) => {
        ws.once('unexpected-response', (_req, res) => resolve(`HTTP ${res.statusCode}`));
        ws.once('open', () => resolve('open'));
      });
      expect(outcome).toBe('HTTP 502');
      ws.terminate();
    });

    it('refuses bad tokens before connecting to Smelter', async () => {
      expect(await refused(gw, 'room:1', {})).toBe(401);
      expect(await refused(gw, 'room:1', { authorization: 'Bearer nope' })).toBe(403);
      expect(await refused(gw, 'room:1', bearer(a2))).toBe(403);
      await store.release('room:1');
      expect(await refused(gw, 'room:1', bearer(a1))).toBe(403);
      expect(seen).toEqual([]);
    });
  });
});
