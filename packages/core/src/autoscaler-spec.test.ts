import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { parseAutoscalerFile, parseFleetFileDocuments } from './autoscaler-spec.js';
import { FleetSpecError } from './spec-parse.js';

const FLEET = `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata: { name: local }
spec: { replicas: 1 }
`;
const scaler = (spec: string) => `---
apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata: { name: local-scaler }
spec:
${spec}`;

function parseError(text: string): FleetSpecError {
  try {
    parseFleetFileDocuments(text, 'f.yaml');
  } catch (err) {
    if (err instanceof FleetSpecError) return err;
    throw err;
  }
  throw new Error('parsed');
}

describe('SmelterFleetAutoscaler documents', () => {
  it('parses fleets and autoscalers from one file, with defaults', () => {
    const { fleets, autoscalers } = parseFleetFileDocuments(
      FLEET +
        scaler(`  fleetName: local
  policy:
    type: Buffer
    buffer: { bufferSize: "25%", minReplicas: 0, maxReplicas: 8 }
`),
      'f.yaml',
    );
    expect(fleets.map((f) => f.name)).toEqual(['local']);
    expect(autoscalers).toEqual([
      {
        name: 'local-scaler',
        fleetName: 'local',
        policy: { type: 'Buffer', bufferSize: 25, percent: true, minReplicas: 0, maxReplicas: 8 },
        scaleDownStabilizationMs: 60_000,
        sync: { type: 'Event' },
      },
    ]);
  });

  it('parses every policy kind, nested', () => {
    const [a] = parseAutoscalerFile(
      scaler(`  fleetName: local
  behavior: { scaleDownStabilization: 2m }
  sync: { type: FixedInterval, interval: 30s }
  policy:
    type: Chain
    chain:
      - id: hook
        type: Webhook
        webhook: { url: "http://127.0.0.1:8080/scale", timeout: 500ms }
      - id: evenings
        type: Schedule
        schedule:
          activePeriod: { startCron: "0 18 * * *", duration: 6h }
          policy: { type: Predictive, predictive: { coldStart: 20s, quantile: 0.999, window: 30m, minReady: 1 } }
`),
      'p.yaml',
    );
    expect(a!.sync).toEqual({ type: 'FixedInterval', intervalMs: 30_000 });
    expect(a!.scaleDownStabilizationMs).toBe(120_000);
    const chain = a!.policy.type === 'Chain' ? a!.policy.chain : [];
    expect(chain[0]).toMatchObject({ type: 'Webhook', id: 'hook', timeoutMs: 500, url: 'http://127.0.0.1:8080/scale' });
    expect(chain[1]).toMatchObject({
      type: 'Schedule',
      durationMs: 6 * 3_600_000,
      policy: { type: 'Predictive', coldStartMs: 20_000, quantile: 0.999, windowMs: 1_800_000, minReady: 1 },
    });
  });

  it('names file, line and field of a bad value', () => {
    const bad = parseError(
      FLEET +
        scaler(`  fleetName: local
  policy:
    type: Schedule
    schedule:
      activePeriod: { startCron: "0 24 * * *", duration: 1h }
      policy: { type: Buffer, buffer: { bufferSize: 1 } }
`),
    );
    expect(bad.message).toMatch(
      /^f\.yaml:14:34: \[document 2\] spec\.policy\.schedule\.activePeriod\.startCron: hour field "24"/,
    );
    expect(
      parseError(FLEET + scaler(`  fleetName: local\n  policy: { type: Buffer, buffer: { bufferSize: -1 } }\n`)).path,
    ).toMatch(/spec\.policy\.buffer\.bufferSize$/);
    expect(parseError(FLEET + scaler(`  fleetName: local\n  policy: { type: Magic }\n`)).message).toMatch(
      /spec\.policy\.type: must be one of Buffer, Predictive, Webhook, Schedule, Chain/,
    );
    expect(
      parseError(
        FLEET +
          scaler(
            `  fleetName: local\n  policy: { type: Buffer, buffer: { bufferSize: 1, minReplicas: 5, maxReplicas: 2 } }\n`,
          ),
      ).path,
    ).toMatch(/maxReplicas$/);
    expect(
      parseError(FLEET + scaler(`  fleetName: local\n  policy: { type: Webhook, webhook: { url: "ftp://x" } }\n`)).why,
    ).toMatch(/http or https/);
    expect(
      parseError(FLEET + scaler(`  fleetName: other\n  policy: { type: Buffer, buffer: { bufferSize: 1 } }\n`)).message,
    ).toMatch(/autoscaler local-scaler: spec\.fleetName: no fleet "other" in this file/);
    expect(
      parseError(FLEET + scaler(`  fleetName: local\n  policy: { type: Predictive, predictive: { quantile: 1 } }\n`))
        .why,
    ).toMatch(/strictly between 0 and 1/);
  });

  it('parses the shipped example', () => {
    const file = new URL('../../../deploy/examples/autoscaled-fleet.yaml', import.meta.url);
    const { fleets, autoscalers } = parseFleetFileDocuments(readFileSync(file, 'utf8'), 'autoscaled-fleet.yaml');
    expect(fleets.map((f) => f.name)).toEqual(['local']);
    expect(autoscalers[0]).toMatchObject({ fleetName: 'local', policy: { type: 'Chain' } });
  });
});
