import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { cli, fleetYaml, start, tempFile, type Running } from './helpers.js';

jest.setTimeout(90_000);

const autoscalerYaml = (name: string, fleet: string, policy: string) => `---
apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata:
  name: ${name}
spec:
  fleetName: ${fleet}
  behavior:
    scaleDownStabilization: 0s
  policy:
${policy}`;

describe('smelter-fleet up with a SmelterFleetAutoscaler in the fleet file', () => {
  const running: Running[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGINT');
        await r.exited;
      }
    }
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
