import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { connectAllocator } from '@smelter-fleet/allocator';
import { startGateway, type Gateway } from '@smelter-fleet/gateway';
import { RedisStore } from '@smelter-fleet/redis-store';
import { startEmulator, type EmulatorHandle } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, newServer, RedisServer } from '@smelter-fleet/testing';
import { WebSocket } from 'ws';
import { start, stopAll, type Running } from './helpers.js';

jest.setTimeout(60_000);

/**
 * Two gateway replicas (one in this process, one a `smelter-fleet gateway` process) and a stand-alone allocator
 * process over one real Redis.
 */
describe('gateway replicas over one Redis', () => {
  let redis: RedisServer;
  const stores: RedisStore[] = [];
  const emulators: EmulatorHandle[] = [];
  const running: Running[] = [];
  let gateway: Gateway;
  let forwarded = 0;

  const connect = async (url: string) => {
    const store = await RedisStore.connect({ url });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterEach(async () => {
    await stopAll(running);
    await gateway?.close();
    await Promise.all(emulators.splice(0).map((e) => e.close()));
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('both replicas route with the allocation token; a release through the allocator stops both at once', async () => {
    const url = `${redis.url}?prefix=e2e-gateway`;
    const setup = await connect(url);
    await setup.putFleet(fleetSpec('gw'));
    for (const name of ['gw-1', 'gw-2']) {
      const emulator = await startEmulator({
        apiPort: 0,
        whipWhepPort: 0,
        rtmpPort: 0,
        log: () => {},
        onRequest: () => forwarded++,
      });
      emulators.push(emulator);
      await setup.addServer(
        newServer(name, 'gw', { ports: { api: emulator.apiPort, whip_whep: emulator.whipWhepPort, rtmp: 0 } }),
      );
      await setup.updateServer(name, { event: 'Healthy' });
    }

    gateway = await startGateway({ store: await connect(url) });
    const replica = start(['gateway', '--store', url, '--gateway-port', '0', '--public-url', 'https://gw.example']);
    running.push(replica);
    const replicaUrl = (await replica.waitFor(/gateway: listening on (\S+), store redis:/)).match[1]!;
    await replica.waitFor(/compositions at https:\/\/gw\.example\/v1\/compositions\/\{composition_id\}\/smelter/);

    // A stand-alone allocator replica, told where the gateway is.
    const allocatorProcess = start([
      'allocator',
      '--store',
      url,
      '--allocator-port',
      '0',
      '--insecure',
      '--gateway-url',
      gateway.url,
    ]);
    running.push(allocatorProcess);
    const allocatorAddress = (await allocatorProcess.waitFor(/allocator: listening on (\S+) \(gRPC\)/)).match[1]!;
    const clients = connectAllocator(allocatorAddress);
    try {
      const { allocation: a } = await clients.allocation.allocate({ fleet: 'gw', compositionId: 'show:1' });
      expect(a!.gatewayUrl).toBe(`${gateway.url}/v1/compositions/show%3A1/smelter`);
      const path = '/v1/compositions/show%3A1/smelter';
      const auth = { authorization: `Bearer ${a!.token}` };
      const emulator = emulators.find((e) => e.apiPort === a!.ports.api)!;

      for (const base of [gateway.url, replicaUrl]) {
        const res = await fetch(`${base}${path}/status`, { headers: auth });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { instance_id: string }).instance_id).toBe(emulator.instanceId);
        const wrong = await fetch(`${base}${path}/status`, { headers: { authorization: 'Bearer nope' } });
        expect(wrong.status).toBe(403);
      }
      expect(forwarded).toBe(2);

      // An open /ws on each replica.
      const sockets = await Promise.all(
        [gateway.url, replicaUrl].map(
          (base) =>
            new Promise<WebSocket>((resolve, reject) => {
              const ws = new WebSocket(`${base.replace('http', 'ws')}${path}/ws`, { headers: auth });
              ws.once('open', () => resolve(ws));
              ws.once('error', reject);
            }),
        ),
      );
      const closed = sockets.map((ws) => new Promise<number>((resolve) => ws.once('close', (code) => resolve(code))));
      const before = forwarded;

      await clients.allocation.release({ compositionId: 'show:1' });
      // At once: the very next request on either replica is refused, nothing reaches Smelter.
      for (const base of [gateway.url, replicaUrl]) {
        const res = await fetch(`${base}${path}/status`, { headers: auth });
        expect(res.status).toBe(403);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PERMISSION_DENIED');
      }
      expect(forwarded).toBe(before);
      expect(await Promise.all(closed)).toEqual([1008, 1008]);
    } finally {
      clients.close();
    }
  });

  it('a stand-alone gateway refuses a memory store, naming --store', async () => {
    const r = start(['gateway', '--gateway-port', '0'], { SMELTER_FLEET_STORE: '' });
    running.push(r);
    const { code } = await r.exited;
    expect(code).toBe(2);
    expect(r.lines.join('\n')).toMatch(/gateway: --store must be a redis:\/\/ URL .* memory store holds none/);
  });
});
