import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { alive, cli, fleetYaml, start, tempFile, type Running, stopAll } from './helpers.js';

jest.setTimeout(60_000);

interface StatusJson {
  fleets: { name: string; emulated: boolean; serversByState: Record<string, number> }[];
  servers: {
    name: string;
    state: string;
    address: string;
    ports: Record<string, number>;
    composition: string;
    pid: number | null;
  }[];
}

async function statusJson(allocator: string): Promise<StatusJson> {
  const r = await cli(['status', '--json', '--allocator', allocator]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

describe('smelter-fleet up', () => {
  const running: Running[] = [];
  const up = (args: string[]) => {
    const r = start(['up', '--allocator-port', '0', ...args]);
    running.push(r);
    return r;
  };
  afterEach(async () => {
    await stopAll(running);
  });

  it('runs the example fleet of emulators; allocate, status, release; Ctrl-C leaves no child; restarts at once', async () => {
    const first = up([]);
    const allocator = (await first.waitFor(/allocator listening on (\S+)/)).match[1]!;
    await first.waitFor(/running the Smelter EMULATOR/);
    await first.waitFor(/^status local: Ready 3$/);

    const allocated = await cli([
      'allocate',
      '--allocator',
      allocator,
      '--fleet',
      'local',
      '--composition',
      'demo',
      '--metadata',
      'owner=e2e',
      '--json',
    ]);
    expect(allocated.code).toBe(0);
    const a = JSON.parse(allocated.stdout);
    expect(a).toMatchObject({
      composition_id: 'demo',
      fleet: 'local',
      region: 'local',
      address: '127.0.0.1',
      metadata: { owner: 'e2e' },
    });
    expect(Object.keys(a.ports).sort()).toEqual(['api', 'rtmp', 'whip_whep']);
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // The allocated server is a live emulator answering Smelter's API on the returned port.
    const smelterStatus = await (await fetch(`http://${a.address}:${a.ports.api}/status`)).json();
    expect(smelterStatus).toMatchObject({ instance_id: a.server_name, configuration: { api_port: a.ports.api } });

    const retried = JSON.parse(
      (await cli(['allocate', '--allocator', allocator, '--fleet', 'local', '--composition', 'demo', '--json'])).stdout,
    );
    expect(retried).toEqual(a);

    const status = await statusJson(allocator);
    expect(status.fleets).toEqual([expect.objectContaining({ name: 'local', emulated: true })]);
    expect(status.servers).toHaveLength(3);
    expect(status.servers.filter((s) => s.state === 'Allocated')).toEqual([
      expect.objectContaining({ name: a.server_name, composition: 'demo', address: '127.0.0.1', ports: a.ports }),
    ]);
    const pids = status.servers.map((s) => s.pid!);
    expect(pids.every((p) => p > 0 && alive(p))).toBe(true);

    const human = await cli(['status', '--allocator', allocator]);
    expect(human.stdout).toMatch(/fleet local .*Ready 2, Allocated 1.*EMULATOR/);

    const mark = first.lines.length;
    const released = await cli(['release', '--allocator', allocator, '--composition', 'demo']);
    expect(released).toMatchObject({ code: 0, stdout: `released composition demo (server ${a.server_name})\n` });
    // Recycled (POST /api/reset) back to Ready, not replaced.
    await first.waitFor(/^status local: Ready 2, Draining 1$/, mark);
    await first.waitFor(/^status local: Ready 3$/, mark);
    expect((await statusJson(allocator)).servers.map((s) => s.name).sort()).toEqual(
      status.servers.map((s) => s.name).sort(),
    );

    first.child.kill('SIGINT');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(pids.filter(alive)).toEqual([]);
    expect(first.lines).toContain('stopped: every server process has exited');

    // The same port is free at once.
    const port = allocator.split(':')[1]!;
    const second = start(['up', '--allocator-port', port]);
    running.push(second);
    await second.waitFor(new RegExp(`allocator listening on 127\\.0\\.0\\.1:${port}`));
    await second.waitFor(/^status local: Ready 3$/);
    const secondPids = (await statusJson(allocator)).servers.map((s) => s.pid!);
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(secondPids.filter(alive)).toEqual([]);
  });

  it('replaces a server that crashes, and answers RESOURCE_EXHAUSTED when none is Ready', async () => {
    const file = tempFile('fleet.yaml', fleetYaml('pair', 2));
    const r = up(['-f', file]);
    const allocator = (await r.waitFor(/allocator listening on (\S+)/)).match[1]!;
    await r.waitFor(/^status pair: Ready 2$/);
    const before = await statusJson(allocator);

    const c1 = await cli(['allocate', '--allocator', allocator, '--fleet', 'pair', '--composition', 'c1']);
    const c2 = await cli(['allocate', '--allocator', allocator, '--fleet', 'pair', '--composition', 'c2']);
    expect([c1.code, c2.code]).toEqual([0, 0]);
    const c3 = await cli(['allocate', '--allocator', allocator, '--fleet', 'pair', '--composition', 'c3']);
    expect(c3.code).toBe(1);
    expect(c3.stderr).toMatch(/RESOURCE_EXHAUSTED: no Ready server in fleet "pair"/);

    // Kill one allocated server outright: its allocation ends, and a new server replaces it.
    const victim = before.servers[0]!;
    const mark = r.lines.length;
    process.kill(victim.pid!, 'SIGKILL');
    await r.waitFor(/^status pair: Ready 1, Allocated 1$/, mark);
    const after = await statusJson(allocator);
    expect(after.servers.map((s) => s.name)).not.toContain(victim.name);
    const gets = await Promise.all(
      ['c1', 'c2'].map((c) => cli(['get', '--allocator', allocator, '--composition', c, '--json'])),
    );
    // Exactly one composition was on the killed server; it is gone (NOT_FOUND), the other is intact.
    expect(gets.map((g) => g.code).sort()).toEqual([0, 1]);
    expect(gets.find((g) => g.code === 1)!.stderr).toMatch(/NOT_FOUND/);

    // The waiting allocation is served by the replacement.
    const waited = await cli([
      'allocate',
      '--allocator',
      allocator,
      '--fleet',
      'pair',
      '--composition',
      'c3',
      '--wait',
      '30s',
      '--json',
    ]);
    expect(waited.code).toBe(0);
    expect(JSON.parse(waited.stdout).server_name).not.toBe(victim.name);
  });
});

describe('smelter-fleet errors', () => {
  it('names the missing flag', async () => {
    const r = await cli(['allocate', '--fleet', 'local']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/allocate: --composition <id> is required/);
  });

  it('names file, line and field of a bad fleet file, and starts nothing', async () => {
    const file = tempFile('bad.yaml', fleetYaml('bad', 2).replace('replicas: 2', 'replicas: -1'));
    const r = await cli(['up', '-f', file, '--allocator-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}:6:13: spec.replicas: must be an integer from 0 to 10000 (got -1)`);
  });

  it('says when the allocator cannot be reached', async () => {
    const r = await cli(['status', '--allocator', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach the allocator at 127\.0\.0\.1:1/);
  });

  it('rejects an invalid composition id with the field named', async () => {
    const file = tempFile('fleet.yaml', fleetYaml('one', 1));
    const r = start(['up', '-f', file, '--allocator-port', '0']);
    try {
      const allocator = (await r.waitFor(/allocator listening on (\S+)/)).match[1]!;
      const bad = await cli(['allocate', '--allocator', allocator, '--fleet', 'one', '--composition', 'not valid']);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/INVALID_ARGUMENT: composition_id: must be/);
      const unknown = await cli(['allocate', '--allocator', allocator, '--fleet', 'nope', '--composition', 'x']);
      expect(unknown.stderr).toMatch(/NOT_FOUND: fleet "nope" not found/);
    } finally {
      r.child.kill('SIGINT');
      await r.exited;
    }
  });
});
