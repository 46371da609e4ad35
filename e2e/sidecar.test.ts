import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import { linkToken, type FleetSpec, type ServerRecord } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { emulatorMainPath, startEmulator } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, freePort, untilServers } from '@smelter-fleet/testing';
import { alive, cli, start, type Running } from './helpers.js';

jest.setTimeout(60_000);

/** `smelter-fleet supervise -- <emulator>` as a real process, linked to an allocator in this test. */
class Supervised {
  readonly store = new MemoryStore();
  allocator!: AllocatorServer;
  proc!: Running;
  api = 0;

  async start(fleet: Partial<FleetSpec> = {}, command = [process.execPath, emulatorMainPath]): Promise<this> {
    await this.store.putFleet(fleetSpec('f', { replicas: 1, ...fleet }));
    this.allocator = await startAllocatorServer({ store: this.store, linkSecret: 'e2e' });
    this.api = await freePort();
    const [whip, rtmp] = [await freePort(), await freePort()];
    await this.store.addServer({
      name: 's1',
      fleet: 'f',
      region: 'local',
      address: '127.0.0.1',
      ports: { api: this.api, whip_whep: whip, rtmp },
      labels: {},
      node: 'n',
    });
    this.proc = start(['supervise', '--log-level', 'info', '--', ...command], {
      SMELTER_API_PORT: String(this.api),
      SMELTER_WHIP_WHEP_SERVER_PORT: String(whip),
      SMELTER_RTMP_SERVER_PORT: String(rtmp),
      SMELTER_EMULATOR_HOST: '127.0.0.1',
      SMELTER_FLEET_SERVER_NAME: 's1',
      SMELTER_FLEET_LINK: this.allocator.address,
      SMELTER_FLEET_LINK_TOKEN: linkToken('e2e', 's1'),
      SMELTER_FLEET_SDK_GRPC_PORT: '0',
      SMELTER_FLEET_SDK_HTTP_PORT: '0',
    });
    return this;
  }

  until(pred: (s: ServerRecord) => boolean): Promise<ServerRecord> {
    return untilServers(this.store, (all) => all.some((s) => s.name === 's1' && pred(s))).then((all) =>
      all.find((s) => s.name === 's1')!,
    );
  }

  smelter(path: string, body?: unknown): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.api}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  }

  async allocateWithOutput(): Promise<void> {
    await this.until((s) => s.state === 'Ready');
    await this.store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const res = await this.smelter('/api/output/out/register', {
      type: 'mp4',
      path: '/tmp/out.mp4',
      video: {
        resolution: { width: 640, height: 360 },
        encoder: { type: 'ffmpeg_h264' },
        initial: { root: { type: 'view' } },
      },
    });
    expect(res.status).toBe(200);
    await this.until((s) => s.state === 'Allocated');
  }

  async close(): Promise<void> {
    if (this.proc.child.exitCode === null && this.proc.child.signalCode === null) this.proc.child.kill('SIGINT');
    await this.proc.exited;
    await this.allocator.close({ force: true });
    await this.store.close();
  }
}

describe('smelter-fleet supervise (the entrypoint for custom images)', () => {
  let s: Supervised;
  afterEach(async () => {
    await s.close();
  });

  it('turns SIGTERM into drain-then-SIGINT: Smelter runs until its composition ends', async () => {
    s = await new Supervised().start();
    await s.allocateWithOutput();
    s.proc.child.kill('SIGTERM');
    const draining = await s.until((x) => x.state === 'Draining');
    expect(draining.reason).toBe('SIGTERM');
    // Still rendering: no SIGINT was sent while the composition runs.
    expect((await s.smelter('/status')).status).toBe(200);
    expect(s.proc.child.exitCode).toBeNull();
    await s.smelter('/_emulator/output/out/end', {});
    const { code } = await s.proc.exited;
    expect(code).toBe(0); // Smelter exited on SIGINT, not SIGKILL
    await expect(s.smelter('/status')).rejects.toThrow();
    expect((await s.store.getServer('s1'))?.state).toBe('Shutdown');
  });

  it('stops Smelter anyway when the max drain time passes, saying so', async () => {
    s = await new Supervised().start({ drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 1000 } });
    await s.allocateWithOutput();
    s.proc.child.kill('SIGTERM');
    await s.proc.waitFor(/max drain time passed with the composition still running/);
    await s.proc.exited;
    await expect(s.smelter('/status')).rejects.toThrow();
  });

  it('stops a Ready server at once on SIGTERM', async () => {
    s = await new Supervised().start();
    await s.until((x) => x.state === 'Ready');
    s.proc.child.kill('SIGTERM');
    expect((await s.proc.exited).code).toBe(0);
    expect((await s.store.getServer('s1'))?.state).toBe('Shutdown');
  });

  it('reports Smelter crashing and exits with its code', async () => {
    s = await new Supervised().start();
    await s.until((x) => x.state === 'Ready');
    const pid = s.proc.child.pid!;
    await s.smelter('/_emulator/crash', {}).catch(() => undefined);
    const x = await s.until((r) => r.state === 'Unhealthy');
    expect(x.reason).toMatch(/refused|exited with code 101/);
    expect((await s.proc.exited).code).toBe(101);
    expect(alive(pid)).toBe(false);
  });

  it('advertises the SDK to Smelter by env, and never passes on the link token', async () => {
    s = await new Supervised().start({}, [
      process.execPath,
      '-e',
      'console.log("ENV " + JSON.stringify(process.env)); setInterval(() => {}, 1000)',
    ]);
    const { match } = await s.proc.waitFor(/^ENV (.*)$/);
    const env = JSON.parse(match[1]!) as Record<string, string>;
    expect(env.SMELTER_FLEET_SDK_HOST).toBe('127.0.0.1');
    expect(Number(env.SMELTER_FLEET_SDK_GRPC_PORT)).toBeGreaterThan(0);
    expect(Number(env.SMELTER_FLEET_SDK_HTTP_PORT)).toBeGreaterThan(0);
    expect(env.SMELTER_FLEET_LINK_TOKEN).toBeUndefined();
    const sdk = await fetch(`http://127.0.0.1:${env.SMELTER_FLEET_SDK_HTTP_PORT}/server`);
    expect(((await sdk.json()) as { server: { name: string } }).server.name).toBe('s1');
    expect(s.proc.lines.join('\n')).not.toContain(linkToken('e2e', 's1'));
  });
});

describe('smelter-fleet sidecar', () => {
  it('runs stand-alone with --local: the SDK works and the fleet it stands in for is logged', async () => {
    const emulator = await startEmulator({ apiPort: 0, whipWhepPort: 0, rtmpPort: 0, log: () => {} });
    const proc = start([
      'sidecar',
      '--local',
      '--smelter-url',
      emulator.url,
      '--sdk-grpc-port',
      '0',
      '--sdk-http-port',
      '0',
    ]);
    try {
      const { match } = await proc.waitFor(/"msg":"SDK listening".*"httpPort":(\d+)/);
      const sdk = `http://127.0.0.1:${match[1]}`;
      await proc.waitFor(/"msg":"fleet would record".*"state":"Ready"/);
      const res = await fetch(`${sdk}/local/allocate`, {
        method: 'POST',
        body: JSON.stringify({ composition_id: 'try-1' }),
      });
      expect(res.status).toBe(200);
      await proc.waitFor(/"msg":"fleet would allocate".*"composition":"try-1"/);
      proc.child.kill('SIGINT');
      expect((await proc.exited).code).toBe(0);
    } finally {
      proc.child.kill('SIGKILL');
      await emulator.close();
    }
  });

  it('explains what is missing', async () => {
    const noLink = await cli(['sidecar', '--name', 'x'], { SMELTER_FLEET_LINK: '', SMELTER_FLEET_LINK_TOKEN: '' });
    expect(noLink.code).toBe(2);
    expect(noLink.stderr).toMatch(/needs --link .*SMELTER_FLEET_LINK_TOKEN; or run with --local/);
    const noCommand = await cli(['supervise', '--local']);
    expect(noCommand.code).toBe(2);
    expect(noCommand.stderr).toMatch(/give the Smelter command after --/);
    const badThreshold = await cli(['sidecar', '--local', '--failure-threshold', '0']);
    expect(badThreshold.stderr).toMatch(/--failure-threshold "0": expected an integer of at least 1/);
  });
});
