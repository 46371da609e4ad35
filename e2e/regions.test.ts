import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { freePort } from '@smelter-fleet/testing';
import { randomBytes } from 'node:crypto';
import { cli, fleetYaml, start, stopAll, tempFile, type Running } from './helpers.js';

// Each CLI call is a fresh Node process: slow on a loaded machine.
jest.setTimeout(240_000);

/** Two regions, each a `smelter-fleet up` with its own store and one server, peering each other. */
describe('regions: two `up` processes forwarding to each other', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('serves from the preferred region, hands over when full, names every region tried, survives a region down', async () => {
    // One token list for both: callers and the peers' forwarded calls present it.
    const tokens = tempFile('tokens', `e2e:${randomBytes(24).toString('base64url')}\n`);
    const latency = tempFile('latency.yaml', 'eu:\n  us: 80\n');
    const [euPort, usPort] = [await freePort(), await freePort()];
    const region = (name: string, port: number, peer: string) => {
      const fleet = tempFile('fleet.yaml', fleetYaml('live', 1, `  region: ${name}\n`));
      const r = start([
        'up',
        '-f',
        fleet,
        '--allocator-port',
        String(port),
        '--gateway-port',
        '0',
        '--region',
        name,
        '--peer',
        peer,
        '--latency-table',
        latency,
        '--auth-tokens',
        tokens,
        '--peer-token-file',
        tokens,
      ]);
      running.push(r);
      return r;
    };
    const eu = region('eu', euPort, `us=127.0.0.1:${usPort}`);
    const us = region('us', usPort, `eu=127.0.0.1:${euPort}`);
    expect((await eu.waitFor(/^region eu; forwards to us/)).match.input).toBe(
      `region eu; forwards to us (127.0.0.1:${usPort})`,
    );
    const usGateway = (await us.waitFor(/^gateway: (\S+)\/v1\/compositions\//)).match[1]!;
    await eu.waitFor(/^status live: Ready 1$/);
    await us.waitFor(/^status live: Ready 1$/);

    const euAddress = `127.0.0.1:${euPort}`;
    const usAddress = `127.0.0.1:${usPort}`;
    const call = async (command: string, address: string, ...args: string[]) => {
      const r = await cli([command, '--allocator', address, '--token-file', tokens, ...args]);
      return { ...r, json: r.code === 0 && args.includes('--json') ? JSON.parse(r.stdout) : undefined };
    };

    // A client in us asking eu's allocator: us is nearest by the latency table, so us serves (eu has room too).
    const a = await call(
      'allocate',
      euAddress,
      '--fleet',
      'live',
      '--composition',
      'a',
      '--client-region',
      'us',
      '--json',
    );
    expect(a.stderr).toBe('');
    expect(a.json).toMatchObject({ composition_id: 'a', region: 'us', fleet: 'live' });
    // The answer is us's own: its gateway routes to its server.
    expect(a.json.gateway_url).toBe(`${usGateway}/v1/compositions/a/smelter`);

    // No preference: eu first.
    const b = await call('allocate', euAddress, '--fleet', 'live', '--composition', 'b', '--json');
    expect(b.json).toMatchObject({ composition_id: 'b', region: 'eu' });

    // Both full: every region tried is named, and the answer is RESOURCE_EXHAUSTED.
    const c = await call('allocate', euAddress, '--fleet', 'live', '--composition', 'c');
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(
      /RESOURCE_EXHAUSTED: no region could serve composition "c": tried eu \(no Ready server in fleet "live"\), us \(RESOURCE_EXHAUSTED: no Ready server in fleet "live"\)/,
    );

    // Retries return the same allocation, through either region.
    expect((await call('allocate', usAddress, '--fleet', 'live', '--composition', 'a', '--json')).json).toEqual(a.json);
    expect((await call('allocate', euAddress, '--fleet', 'live', '--composition', 'a', '--json')).json).toEqual(a.json);
    // Get and release through eu reach the composition in us.
    expect((await call('get', euAddress, '--composition', 'a', '--json')).json).toEqual(a.json);
    const released = await call('release', euAddress, '--composition', 'a', '--json');
    expect(released.json).toMatchObject({ composition_id: 'a', region: 'us', server_name: a.json.server_name });
    expect((await call('get', usAddress, '--composition', 'a')).stderr).toMatch(/NOT_FOUND/);

    // us goes down; eu frees its server; a caller preferring us is served by eu.
    us.child.kill('SIGINT');
    await us.exited;
    const mark = eu.lines.length;
    expect((await call('release', euAddress, '--composition', 'b')).code).toBe(0);
    await eu.waitFor(/^status live: Ready 1$/, mark);
    const d = await call(
      'allocate',
      euAddress,
      '--fleet',
      'live',
      '--composition',
      'd',
      '--region-preference',
      'us,eu',
      '--json',
    );
    expect(d.stderr).toBe('');
    expect(d.json).toMatchObject({ composition_id: 'd', region: 'eu' });
  });

  it('bad region flags: the flag, or the latency file and field, is named', async () => {
    const bad = tempFile('latency.yaml', 'eu:\n  us: soon\n');
    const r = await cli(['up', '--allocator-port', '0', '--gateway-port', '0', '--insecure', '--latency-table', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `smelter-fleet up: --latency-table ${bad}:2:7: eu.us: must be milliseconds from 0 to 600000 (got "soon")\n`,
    );
    const peer = await cli(['up', '--allocator-port', '0', '--gateway-port', '0', '--insecure', '--peer', 'us']);
    expect(peer.code).toBe(2);
    expect(peer.stderr).toMatch(/^smelter-fleet up: --peer "us": expected region=host:port\n/);
  });
});
