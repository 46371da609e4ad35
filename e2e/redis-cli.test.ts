import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { RedisStore } from '@smelter-fleet/redis-store';
import { alive, fleetSpec, freePort, newServer, RedisServer, untilServers } from '@smelter-fleet/testing';
import { allocatorAuth, autoscalerYaml, cli, fleetYaml, start, tempFile, type Running, stopAll } from './helpers.js';

jest.setTimeout(60_000);

describe('smelter-fleet with --store redis://', () => {
  let redis: RedisServer;
  const running: Running[] = [];
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = start(args, env);
    running.push(r);
    return r;
  };
  beforeAll(async () => {
    redis = await RedisServer.start({ aof: true });
  });
  afterEach(async () => {
    // The controller first: it stops its servers, whose sidecars link to the allocators.
    await stopAll(running, 'SIGTERM');
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('refuses a missing, malformed or unreachable store, naming --store', async () => {
    const memory = await cli(['allocator', '--allocator-port', '0'], { SMELTER_FLEET_STORE: '' });
    expect(memory.code).toBe(2);
    expect(memory.stderr).toMatch(/allocator: --store must be a redis:\/\/ URL/);
    const bad = await cli(['controller', '--store', 'redis://a,b']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/controller: --store: redis:\/\/ takes one host/);
    const port = await freePort();
    const down = await cli([
      'allocator',
      '--store',
      `redis://user:pw@127.0.0.1:${port}`,
      '--allocator-port',
      '0',
      ...allocatorAuth,
    ]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      new RegExp(`allocator: --store redis://user:\\*\\*\\*@127.0.0.1:${port}: cannot connect`),
    );
    expect(down.stderr).not.toContain(':pw@');
  });

  it('a stand-alone allocator refuses to run open; --insecure is explicit and warns', async () => {
    const open = await cli(['allocator', '--store', redis.url, '--allocator-port', '0']);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/allocator: no caller authentication: give --auth-tokens FILE .* --insecure/);
    const insecure = run([
      'allocator',
      '--store',
      `${redis.url}?prefix=e2e-open`,
      '--allocator-port',
      '0',
      '--insecure',
    ]);
    const address = (await insecure.waitFor(/listening on (\S+)/)).match[1]!;
    await insecure.waitFor(/caller authentication is OFF/);
    await insecure.waitFor(/^callers: NOT authenticated \(--insecure\)/);
    const status = await cli(['status', '--allocator', address], { SMELTER_FLEET_STATE_DIR: '/nonexistent' });
    expect(status.stderr).toBe('');
  });

  it('a stand-alone allocator with --auth-tokens refuses a caller without the token', async () => {
    const replica = run([
      'allocator',
      '--store',
      `${redis.url}?prefix=e2e-tokens`,
      '--allocator-port',
      '0',
      ...allocatorAuth,
    ]);
    const address = (await replica.waitFor(/listening on (\S+)/)).match[1]!;
    expect((await cli(['status', '--allocator', address])).code).toBe(0);
    const refused = await cli(['status', '--allocator', address], { SMELTER_FLEET_TOKEN: 'not-the-token' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/status: UNAUTHENTICATED: invalid bearer token/);
    expect(refused.stderr).not.toContain('not-the-token');
  });

  it('up --store redis:// shares its fleet with a stand-alone replica', async () => {
    const url = `${redis.url}?prefix=e2e-up`;
    const fleetFile = tempFile('fleet.yaml', fleetYaml('upfleet', 1));
    const up = run(['up', '--store', url, '-f', fleetFile, '--allocator-port', '0']);
    await up.waitFor(/allocator listening on \S+ \(gRPC\), store redis:\/\/127\.0\.0\.1/);
    await up.waitFor(/^status upfleet: Ready 1$/);
    const replica = run(['allocator', '--store', url, '--allocator-port', '0', ...allocatorAuth]);
    const address = (await replica.waitFor(/listening on (\S+)/)).match[1]!;
    const allocated = await cli(['allocate', '--allocator', address, '--fleet', 'upfleet', '--composition', 'u1']);
    expect(allocated.stderr).toBe('');
    expect(allocated.code).toBe(0);
    await up.waitFor(/^status upfleet: Allocated 1$/);
  });

  it('answers UNAVAILABLE while Redis is down and serves again once it is back', async () => {
    const own = await RedisServer.start({ aof: true });
    try {
      const url = `${own.url}?prefix=e2e-down`;
      const store = await RedisStore.connect({ url });
      await store.putFleet(fleetSpec('f'));
      await store.addServer(newServer('s1', 'f'));
      await store.updateServer('s1', { event: 'Healthy' });
      await store.close();
      const replica = run(['allocator', '--store', url, '--allocator-port', '0', ...allocatorAuth]);
      const address = (await replica.waitFor(/listening on (\S+)/)).match[1]!;
      const allocate = () => cli(['allocate', '--allocator', address, '--fleet', 'f', '--composition', 'c1', '--json']);
      await own.kill();
      const down = await allocate();
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/or its store: UNAVAILABLE: Redis: /);
      await own.restart();
      // The replica reconnects by itself; a client retries as it would after UNAVAILABLE.
      let back = await allocate();
      for (let i = 0; i < 20 && back.code !== 0; i++) back = await allocate();
      expect(back.stderr).toBe('');
      expect(JSON.parse(back.stdout)).toMatchObject({ server_name: 's1', composition_id: 'c1' });
    } finally {
      await own.stop();
    }
  });

  it("runs the fleet file's autoscalers in the stand-alone controller, fed by allocations on a replica", async () => {
    const url = `${redis.url}?prefix=e2e-scale`;
    const replica = run(['allocator', '--store', url, '--allocator-port', '0', ...allocatorAuth]);
    const address = (await replica.waitFor(/listening on (\S+)/)).match[1]!;
    const fleetFile = tempFile(
      'fleet.yaml',
      fleetYaml('scaled', 1) +
        autoscalerYaml('scaled-buffer', 'scaled', '    type: Buffer\n    buffer: { bufferSize: 1, maxReplicas: 3 }\n'),
    );
    const controller = run(['controller', '--store', url, '-f', fleetFile, '--link', address, '--metrics-port', '0']);
    const metricsUrl = (await controller.waitFor(/^metrics: (\S+) \(Prometheus\)$/)).match[1]!;
    await controller.waitFor(/^autoscaler scaled-buffer: Buffer policy on fleet scaled$/);
    const store = await RedisStore.connect({ url });
    try {
      await untilServers(store, (s) => s.some((x) => x.state === 'Ready'));
      const from = controller.lines.length;
      const allocated = await cli(['allocate', '--allocator', address, '--fleet', 'scaled', '--composition', 'x1']);
      expect(allocated.stderr).toBe('');
      await controller.waitFor(/^autoscaler scaled-buffer: fleet scaled 1 -> 2 \(buffer 1 over 1 busy\)$/, from);
      await untilServers(store, (s) => s.filter((x) => x.state === 'Ready').length === 1 && s.length === 2);
      const metrics = await (await fetch(metricsUrl)).text();
      expect(metrics).toMatch(/^smelter_fleet_replicas_desired\{fleet="scaled"\} 2$/m);
    } finally {
      await store.close();
    }
  });

  it('runs a controller and two allocator replicas on one Redis: either replica allocates, retries agree', async () => {
    const url = `${redis.url}?prefix=e2e-cli`;
    const a1 = run(['allocator', '--store', url, '--allocator-port', '0', ...allocatorAuth]);
    const a2 = run(['allocator', '--allocator-port', '0', ...allocatorAuth], { SMELTER_FLEET_STORE: url });
    const addr1 = (await a1.waitFor(/listening on (\S+)/)).match[1]!;
    const addr2 = (await a2.waitFor(/listening on (\S+)/)).match[1]!;
    // The controller's sidecars link to replica 1 with tokens from the secret kept in Redis.
    const fleetFile = tempFile('fleet.yaml', fleetYaml('shared', 2));
    const controller = run(['controller', '--store', url, '-f', fleetFile, '--link', addr1]);
    await controller.waitFor(/fleets shared/);

    const store = await RedisStore.connect({ url });
    try {
      const ready = await untilServers(store, (s) => s.filter((x) => x.state === 'Ready').length === 2);
      const first = await cli(['allocate', '--allocator', addr2, '--fleet', 'shared', '--composition', 'c1', '--json']);
      expect(first.stderr).toBe('');
      const retried = await cli([
        'allocate',
        '--allocator',
        addr1,
        '--fleet',
        'shared',
        '--composition',
        'c1',
        '--json',
      ]);
      const a = JSON.parse(first.stdout) as { server_name: string; token: string };
      expect(JSON.parse(retried.stdout)).toEqual(a);
      expect(ready.map((s) => s.name)).toContain(a.server_name);
      expect(await store.getServer(a.server_name)).toMatchObject({ state: 'Allocated', compositionId: 'c1' });
      const released = await cli(['release', '--allocator', addr1, '--composition', 'c1']);
      expect(released.code).toBe(0);
      // Recycled by its sidecar (linked to replica 1) after the release went through replica 1.
      await untilServers(store, (s) => s.find((x) => x.name === a.server_name)?.state === 'Ready');

      const pids = (await store.listServers()).map((s) => s.pid!);
      controller.child.kill('SIGTERM');
      await controller.waitFor(/every server process has exited/);
      expect(pids.filter(alive)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
