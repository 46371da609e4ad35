import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { request } from 'node:https';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { httpAuthRequest } from '@smelter-fleet/allocator';
import type { Allocation } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { startEmulator, type EmulatorHandle } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, issueCert, makeCa, newServer, type CertPair } from '@smelter-fleet/testing';
import express from 'express';
import { startGateway, type Gateway, type GatewayTls } from './gateway.js';

interface Reply {
  status: number;
  body: string;
  /** Serial number of the certificate the gateway presented. */
  serial: string;
}

function call(
  url: string,
  options: { ca: string; client?: CertPair; headers?: Record<string, string> },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ca: options.ca,
        headers: options.headers,
        agent: false,
        ...(options.client && { cert: options.client.cert, key: options.client.key }),
      },
      (res) => {
        const serial = new X509Certificate((res.socket as TLSSocket).getPeerCertificate(true).raw).serialNumber;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), serial }));
      },
    );
    req.once('error', reject);
    req.end();
  });
}

describe('gateway over HTTPS', () => {
  const serverCa = makeCa('gateway CA');
  const clientCa = makeCa('callers CA');
  const strangerCa = makeCa('stranger CA');
  const serverCert = () => issueCert(serverCa, { commonName: 'gateway', ips: ['127.0.0.1'], usage: 'server' });
  let store: MemoryStore;
  let emulator: EmulatorHandle;
  let gateway: Gateway;
  let allocation: Allocation;
  let files: { cert: Buffer; key: Buffer; ca: Buffer | undefined };
  const changed = new Set<() => void>();
  const tls: GatewayTls = {
    current: () => files,
    onChange: (l) => (changed.add(l), () => changed.delete(l)),
  };

  beforeEach(async () => {
    const pair = serverCert();
    files = { cert: Buffer.from(pair.cert), key: Buffer.from(pair.key), ca: Buffer.from(clientCa.cert) };
    store = new MemoryStore();
    emulator = await startEmulator({ apiPort: 0, whipWhepPort: 0, rtmpPort: 0, log: () => {} });
    await store.putFleet(fleetSpec('f'));
    await store.addServer(newServer('f-1', 'f', { ports: { api: emulator.apiPort, whip_whep: 0, rtmp: 0 } }));
    await store.updateServer('f-1', { event: 'Healthy' });
    allocation = await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    // What the REST mirror's caller auth sees of the connection.
    const probe = express.Router().get('/whoami', (req, res) => {
      const seen = httpAuthRequest(req);
      res.json({ authorized: seen.peerCertificateAuthorized, cn: seen.peerCommonName ?? null });
    });
    gateway = await startGateway({ store, tls, extraRoutes: probe });
  });

  afterEach(async () => {
    await gateway.close();
    await emulator.close();
    await store.close();
  });

  it('serves compositions to their token holders without a client certificate', async () => {
    expect(gateway.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const url = `${gateway.url}/v1/compositions/c1/smelter/status`;
    const ok = await call(url, { ca: serverCa.cert, headers: { authorization: `Bearer ${allocation.token}` } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toHaveProperty('instance_id');
    expect((await call(url, { ca: serverCa.cert })).status).toBe(401);
  });

  it('tells the caller auth whether a listed CA signed the client certificate', async () => {
    const whoami = `${gateway.url}/whoami`;
    const member = issueCert(clientCa, { commonName: 'backend-a', usage: 'client' });
    const stranger = issueCert(strangerCa, { commonName: 'mallory', usage: 'client' });
    expect(JSON.parse((await call(whoami, { ca: serverCa.cert, client: member })).body)).toEqual({
      authorized: true,
      cn: 'backend-a',
    });
    expect(JSON.parse((await call(whoami, { ca: serverCa.cert, client: stranger })).body)).toMatchObject({
      authorized: false,
    });
    expect(JSON.parse((await call(whoami, { ca: serverCa.cert })).body)).toEqual({ authorized: false, cn: null });
  });

  it('presents a rotated certificate to new connections, without a restart', async () => {
    const whoami = `${gateway.url}/whoami`;
    const before = await call(whoami, { ca: serverCa.cert });
    const next = serverCert();
    files = { cert: Buffer.from(next.cert), key: Buffer.from(next.key), ca: files.ca };
    for (const l of changed) l();
    const after = await call(whoami, { ca: serverCa.cert });
    expect(after.serial).not.toBe(before.serial);
    expect(after.serial).toBe(new X509Certificate(next.cert).serialNumber);
  });
});
