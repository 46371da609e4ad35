import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { cli, fleetYaml, start, tempFile, type Running, stopAll } from './helpers.js';

jest.setTimeout(90_000);

interface StatusJson {
  fleets: { name: string; rollout: { templateHash: string; updated: number; outdated: number } }[];
  servers: { name: string; state: string; composition: string; outdated: boolean; drainDeadline: number | null }[];
}

async function run(args: string[]): Promise<string> {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`smelter-fleet ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  expect(r.stderr).toBe('');
  return r.stdout;
}

describe('smelter-fleet apply, drain, events and metrics against a running up', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('rolls out a new template without cutting a composition, drains a server, shows progress', async () => {
    const file = tempFile('fleet.yaml', fleetYaml('pair', 2));
    const up = start(['up', '-f', file, '--allocator-port', '0', '--metrics-port', '0']);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    const metricsUrl = (await up.waitFor(/^metrics: (\S+) \(Prometheus\)$/)).match[1]!;
    await up.waitFor(/^status pair: Ready 2$/);
    const at = ['--allocator', allocator];
    const allocation = JSON.parse(await run(['allocate', ...at, '--fleet', 'pair', '--composition', 'c1', '--json']));
    const held: string = allocation.server_name;

    // A bad file is refused locally, naming file, line and field; nothing changes.
    const bad = tempFile('bad.yaml', fleetYaml('pair', 2).replace('replicas: 2', 'replicas: lots'));
    const refused = await cli(['apply', ...at, '-f', bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `smelter-fleet apply: invalid fleet file: ${bad}:6:13: spec.replicas: must be an integer from 0 to 10000 (got "lots")\n`,
    );

    // Scale to 3 and change the template: a rollout.
    const v2 = tempFile(
      'v2.yaml',
      fleetYaml('pair', 3, '  template:\n    spec:\n      env: { SMELTER_OUTPUT_FRAMERATE: "25" }\n'),
    );
    const mark = up.lines.length;
    const applied = await run(['apply', ...at, '-f', v2]);
    expect(applied).toMatch(
      /^smelterfleet\/pair configured: replicas 2 -> 3; template \w{10} -> \w{10} \(RollingUpdate\)\n$/,
    );
    // 1 in use, so 2 warm wanted: two new servers Ready, the old Ready one gone, the allocated one Draining.
    await up.waitFor(/^status pair: Ready 2, Draining 1$/, mark);
    const mid = JSON.parse(await run(['status', ...at, '--json'])) as StatusJson;
    expect(mid.servers.find((s) => s.name === held)).toMatchObject({
      state: 'Draining',
      composition: 'c1',
      outdated: true,
    });
    expect(mid.servers.filter((s) => s.state === 'Ready' && !s.outdated)).toHaveLength(2);
    expect(mid.fleets[0]!.rollout).toMatchObject({ updated: 2, outdated: 1 });
    expect(JSON.parse(await run(['get', ...at, '--composition', 'c1', '--json']))).toMatchObject({ server_name: held });
    const human = await run(['status', ...at]);
    expect(human).toMatch(
      /^ {2}rollout to template \w{10} \(RollingUpdate maxSurge 25% maxUnavailable 25%\): 2 updated, 1 outdated$/m,
    );
    expect(human).toMatch(
      new RegExp(
        `^  draining ${held}: composition c1, (3h59m|4h00m) left of the max drain time, outdated template$`,
        'm',
      ),
    );

    // Drain a Ready server by hand: it stops at once (no composition) and is replaced.
    const victim = mid.servers.find((s) => s.state === 'Ready')!.name;
    const mark2 = up.lines.length;
    expect(await run(['drain', ...at, victim])).toBe(
      `server ${victim} draining: it holds no composition, so it stops now\n`,
    );
    await up.waitFor(/^status pair: Ready 2, Draining 1$/, mark2);
    const afterDrain = JSON.parse(await run(['status', ...at, '--json'])) as StatusJson;
    expect(afterDrain.servers.map((s) => s.name)).not.toContain(victim);

    // The composition ends: the outdated server stops (not recycled) and is replaced; the rollout completes.
    const mark3 = up.lines.length;
    await run(['release', ...at, '--composition', 'c1']);
    await up.waitFor(/^status pair: Ready 3$/, mark3);
    const done = JSON.parse(await run(['status', ...at, '--json'])) as StatusJson;
    expect(done.servers.map((s) => s.name)).not.toContain(held);
    expect(done.servers.every((s) => !s.outdated)).toBe(true);
    expect(done.fleets[0]!.rollout).toMatchObject({ updated: 3, outdated: 0 });

    const events = JSON.parse(await run(['events', ...at, '--json'])) as { reason: string; object: string }[];
    const reasons = events.map((e) => `${e.reason} ${e.object}`);
    expect(reasons).toEqual(
      expect.arrayContaining([
        'ScaledUp fleet/pair',
        `Draining server/${held}`,
        'RolloutProgress fleet/pair',
        `Draining server/${victim}`,
        'Drained fleet/pair',
        'RolloutComplete fleet/pair',
      ]),
    );
    const table = await run(['events', ...at, '--server', victim]);
    expect(table).toMatch(/^LAST SEEN +TYPE +REASON +OBJECT +COUNT +MESSAGE$/m);
    expect(table).toMatch(new RegExp(`Normal +Draining +server/${victim} +1 +drained by operator$`, 'm'));

    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(/^smelter_fleet_servers\{fleet="pair",state="Ready"\} 3$/m);
    expect(metrics).toMatch(/^smelter_fleet_servers_outdated\{fleet="pair"\} 0$/m);
    expect(metrics).toMatch(/^smelter_fleet_servers_stopped_total\{fleet="pair",why="drained"\} 1$/m);
    expect(metrics).toMatch(/^smelter_fleet_reconcile_duration_seconds_count \d+$/m);
  });

  it('names bad drain and apply calls', async () => {
    const up = start(['up', '-f', tempFile('fleet.yaml', fleetYaml('one', 1)), '--allocator-port', '0']);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    const at = ['--allocator', allocator];
    const noTarget = await cli(['drain', ...at]);
    expect([noTarget.code, noTarget.stderr.split('\n')[0]]).toEqual([
      2,
      'smelter-fleet drain: name servers, or --fleet <name>',
    ]);
    const unknown = await cli(['drain', ...at, 'nope']);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'smelter-fleet drain: NOT_FOUND: server "nope" not found\n']);
    const noFile = await cli(['apply', ...at]);
    expect(noFile.code).toBe(2);
    const kind = tempFile('k.yaml', fleetYaml('one', 1).replace('kind: SmelterFleet', 'kind: Fleet'));
    const badKind = await cli(['apply', ...at, '-f', kind]);
    expect(badKind.stderr).toMatch(
      /^smelter-fleet apply: invalid fleet file: .*k\.yaml:2:7: kind: must be one of SmelterFleet\b.*\(got "Fleet"\)\n$/,
    );
    const dry = await run(['apply', ...at, '-f', tempFile('two.yaml', fleetYaml('one', 2)), '--dry-run']);
    expect(dry).toBe('smelterfleet/one configured (dry run): replicas 1 -> 2\n');
  });
});
