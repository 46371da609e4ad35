import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CallerAuth, expressAuth } from '@smelter-fleet/allocator';
import { issueCert, makeCa, type CertPair } from '@smelter-fleet/testing';
import express from 'express';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The allocator's caller auth as Express middleware (what the REST mirror mounts), over real sockets.

function app(auth: CallerAuth) {
  const a = express();
  a.use(expressAuth(auth));
  a.get('/v1/fleets', (_req, res) => {
    res.json({ principal: res.locals.principal as string });
  });
  return a;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

function get(url: string, options: { authorization?: string; ca?: string; cert?: CertPair } = {}): Promise<Reply> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        headers: options.authorization ? { authorization: options.authorization } : {},
        ...(options.ca && { ca: options.ca }),
        ...(options.cert && { cert: options.cert.cert, key: options.cert.key }),
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('expressAuth with bearer tokens', () => {
  let server: Server;
  let auth: CallerAuth;
  let base: string;
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'smelter-fleet-rest-auth-')), 'tokens');
    writeFileSync(file, 'backend:rest-token-0123456789\n');
    auth = await CallerAuth.create({ tokensFile: file, pollIntervalMs: 60_000 });
    server = createHttpServer(app(auth));
    base = `http://127.0.0.1:${await listen(server)}`;
  });
  afterAll(async () => {
    auth.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('lets a listed token through, naming its holder', async () => {
    const r = await get(`${base}/v1/fleets`, { authorization: 'Bearer rest-token-0123456789' });
    expect(r).toMatchObject({ status: 200, body: { principal: 'backend' } });
  });

  it.each([undefined, 'Bearer wrong-token-0123456789', 'Basic YTpi'])(
    'answers 401 with WWW-Authenticate and the REST error shape (%s)',
    async (authorization) => {
      const r = await get(`${base}/v1/fleets`, authorization ? { authorization } : {});
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer');
      expect(r.body).toEqual({ error: { code: 'UNAUTHENTICATED', message: expect.any(String) } });
      expect(JSON.stringify(r.body)).not.toContain('0123456789');
    },
  );
});

describe('expressAuth with mTLS', () => {
  let server: Server;
  let auth: CallerAuth;
  let base: string;
  let serverCa: CertPair;
  let clientCa: CertPair;
  let strangerCa: CertPair;
  beforeAll(async () => {
    serverCa = makeCa('server CA');
    clientCa = makeCa('client CA');
    strangerCa = makeCa('stranger CA');
    const serverCert = issueCert(serverCa, { commonName: 'rest', ips: ['127.0.0.1'], usage: 'server' });
    const dir = mkdtempSync(join(tmpdir(), 'smelter-fleet-rest-mtls-'));
    writeFileSync(join(dir, 'tls.crt'), serverCert.cert);
    writeFileSync(join(dir, 'tls.key'), serverCert.key);
    writeFileSync(join(dir, 'ca.crt'), clientCa.cert);
    auth = await CallerAuth.create({
      tlsCertFile: join(dir, 'tls.crt'),
      tlsKeyFile: join(dir, 'tls.key'),
      clientCaFile: join(dir, 'ca.crt'),
      pollIntervalMs: 60_000,
    });
    // The HTTP listener asks for a certificate but lets the middleware decide, so refusals are answered in JSON.
    server = createHttpsServer(
      { cert: serverCert.cert, key: serverCert.key, ca: clientCa.cert, requestCert: true, rejectUnauthorized: false },
      app(auth),
    );
    base = `https://127.0.0.1:${await listen(server)}`;
  }, 60_000);
  afterAll(async () => {
    auth.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('lets a certificate of the client CA through, named by its common name', async () => {
    const cert = issueCert(clientCa, { commonName: 'backend-a', usage: 'client' });
    const r = await get(`${base}/v1/fleets`, { ca: serverCa.cert, cert });
    expect(r).toMatchObject({ status: 200, body: { principal: 'cert:backend-a' } });
  });

  it('answers 401 without a certificate and 403 for one from another CA', async () => {
    expect((await get(`${base}/v1/fleets`, { ca: serverCa.cert })).status).toBe(401);
    const stranger = issueCert(strangerCa, { commonName: 'stranger', usage: 'client' });
    const r = await get(`${base}/v1/fleets`, { ca: serverCa.cert, cert: stranger });
    expect(r).toMatchObject({ status: 403, body: { error: { code: 'PERMISSION_DENIED' } } });
  });
});
