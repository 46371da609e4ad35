import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { autoscalerYaml, cli, fleetYaml, start, tempFile, type Running, stopAll } from './helpers.js';

jest.setTimeout(90_000);

describe('smelter-fleet up with a SmelterFleetAutoscaler in the fleet file', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('scales up when servers are allocated, back down when released, and from zero on waiting demand', async () => {
    const file = tempFile(
      'fleet.yaml',
      fleetYaml('warm', 1) +
        autoscalerYaml(
          'warm-buffer',
          'warm',
          '    type: Buffer\n    buffer: { bufferSize: 1, minReplicas: 0, maxReplicas: 4 }\n',
        ) +
        '---\n' +
        fleetYaml('cold', 0) +
        autoscalerYaml(
          'cold-buffer',
          'cold',
          '    type: Buffer\n    buffer: { bufferSize: 0, minReplicas: 0, maxReplicas: 2 }\n',
        ),
    );
    const up = start(['up', '--allocator-port', '0', '-f', file]);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    await up.waitFor(/^autoscaler warm-buffer: Buffer policy on fleet warm$/);
    await up.waitFor(/^status warm: Ready 1; cold: no servers$/);

    const from = up.lines.length;
    const a = await cli(['allocate', '--allocator', allocator, '--fleet', 'warm', '--composition', 'show-1', '--json']);
    expect(a.code).toBe(0);
    await up.waitFor(/^autoscaler warm-buffer: fleet warm 1 -> 2 \(buffer 1 over 1 busy\)$/, from);
    await up.waitFor(/warm: Ready 1, Allocated 1;/, from);

    const released = up.lines.length;
    expect((await cli(['release', '--allocator', allocator, '--composition', 'show-1'])).code).toBe(0);
    await up.waitFor(/^autoscaler warm-buffer: fleet warm 2 -> 1 \(buffer 1 over 0 busy\)$/, released);
    await up.waitFor(/warm: Ready 1;/, released);

    // A fleet at zero: the allocation waits, its miss is demand, the autoscaler launches a server for it.
    const cold = await cli([
      'allocate',
      '--allocator',
      allocator,
      '--fleet',
      'cold',
      '--composition',
      'show-2',
      '--wait',
      '30s',
      '--json',
    ]);
    expect(cold.stderr).toBe('');
    expect(cold.code).toBe(0);
    expect(JSON.parse(cold.stdout)).toMatchObject({ composition_id: 'show-2', fleet: 'cold' });
    await up.waitFor(/^autoscaler cold-buffer: fleet cold 0 -> 1 \(buffer 0 over 1 busy\)$/, released);

    // A new policy through `apply` reaches the running autoscaler.
    const policy = tempFile(
      'policy.yaml',
      autoscalerYaml('warm-buffer', 'warm', '    type: Buffer\n    buffer: { bufferSize: 3, maxReplicas: 4 }\n'),
    );
    const applied = up.lines.length;
    const res = await cli(['apply', '--allocator', allocator, '-f', policy]);
    expect(res.stderr).toBe('');
    expect(res.stdout.trim()).toBe('smelterfleetautoscaler/warm-buffer configured: Buffer policy on fleet warm');
    await up.waitFor(/^autoscaler warm-buffer: fleet warm 1 -> 3 \(buffer 3 over 0 busy\)$/, applied);
  });

  it('rejects a bad autoscaler naming file, line and field', async () => {
    const file = tempFile(
      'bad.yaml',
      fleetYaml('f', 1) + autoscalerYaml('s', 'f', '    type: Buffer\n    buffer: { bufferSize: "120%" }\n'),
    );
    const r = await cli(['up', '--allocator-port', '0', '-f', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /bad\.yaml:\d+:\d+: \[document 2\] spec\.policy\.buffer\.bufferSize: percentage must be 1% to 99%/,
    );
  });
});

describe('smelter-fleet simulate', () => {
  it('replays a generated trace for each policy, deterministically, and writes the trace', async () => {
    const out = tempFile('trace.json', '');
    const args = [
      'simulate',
      '--trace',
      'gen:seed=5,duration=10m,rate=4/m,burstEvery=0s,medianLength=2m',
      '--cold-start',
      '10s',
    ];
    const first = await cli([
      ...args,
      '--policy',
      'buffer:2',
      '--policy',
      'agones-buffer:2',
      '--json',
      '--write-trace',
      out,
    ]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const lines = first.stdout.split('\n');
    expect(lines[0]).toMatch(/^wrote .*trace\.json: \d+ arrivals$/);
    const reports = JSON.parse(lines.slice(1).join('\n')) as {
      policy: string;
      arrivals: number;
      warm: number;
      waited: number;
      failed: number;
      wallMs: number;
    }[];
    expect(reports.map((r) => r.policy)).toEqual(['buffer:2', 'agones-buffer:2']);
    for (const r of reports) expect(r.warm + r.waited + r.failed).toBe(r.arrivals);
    // The written trace replays to the same result as the generator it came from.
    const again = await cli(['simulate', '--trace', out, '--cold-start', '10s', '--policy', 'buffer:2', '--json']);
    const [replayed] = JSON.parse(again.stdout) as typeof reports;
    expect({ ...replayed, wallMs: 0, trace: '' }).toEqual({ ...reports[0], wallMs: 0, trace: '' });
    const table = await cli(['simulate', '--trace', out, '--cold-start', '10s', '--policy', 'predictive']);
    expect(table.stdout).toMatch(/\| trace +\| policy +\| arrivals \| warm % \|/);
  });

  it('names the bad field of a trace, a generator spec or a policy file', async () => {
    const badTrace = tempFile('t.json', '{"durationMs": 1000, "arrivals": [[5, 1], [2, 1]]}');
    let r = await cli(['simulate', '--trace', badTrace]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/t\.json: arrivals\[1\]: must not come before the previous arrival/);
    r = await cli(['simulate', '--trace', 'gen:burstRate=lots']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/generator burstRate: must be a rate like 2\/m/);
    const badPolicy = tempFile(
      'p.yaml',
      autoscalerYaml('p', 'x', '    type: Predictive\n    predictive: { coldStart: 30s, window: 10s }\n'),
    );
    r = await cli(['simulate', '--trace', 'gen:duration=1m', '--policy', badPolicy]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/p\.yaml:\d+:\d+: spec\.policy\.predictive\.window: must be at least coldStart/);
    r = await cli(['simulate', '--policy', 'buffer:1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--trace is required/);
  });
});
