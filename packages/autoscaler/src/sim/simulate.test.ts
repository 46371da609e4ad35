import { describe, expect, it, jest } from '@jest/globals';
import { parseAutoscalerFile } from '@smelter-fleet/core';
import { oracleIdleMs } from './oracle.js';
import { simulate } from './simulate.js';
import { generateTrace, parseGeneratorSpec, traceFromJson, traceToJson, TraceError, type Trace } from './trace.js';

jest.setTimeout(60_000);

const policy = (yaml: string) =>
  parseAutoscalerFile(
    `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata: { name: p }
spec:
  fleetName: any
${yaml}`,
    'p.yaml',
  )[0]!;

// Three compositions; cold start 10 s, flush 2 s. The timeline is worked out by hand in the test below.
const tiny: Trace = {
  name: 'tiny',
  durationMs: 100_000,
  arrivals: [
    { atMs: 10_000, durationMs: 20_000 },
    { atMs: 15_000, durationMs: 5000 },
    { atMs: 50_000, durationMs: 10_000 },
  ],
};

describe('simulate (real controller, store and autoscaler in virtual time)', () => {
  it('accounts a tiny trace exactly as computed by hand', async () => {
    const report = await simulate({
      trace: tiny,
      coldStartMs: 10_000,
      flushTimeMs: 2000,
      autoscaler: policy(`  behavior: { scaleDownStabilization: 0s }
  policy: { type: Buffer, buffer: { bufferSize: 1, minReplicas: 0 } }
`),
    });
    // Server A is Ready at 0. 10 s: c0 takes A; B launched (Ready 20 s). 15 s: c1 finds none and waits, its demand
    // launches C (Ready 25 s). 20 s: c1 takes B (waited 5 s). 25 s: c1 ends, B drains 2 s. 27 s: B back, C retired.
    // 30 s: c0 ends; 32 s: A back, B retired. 50 s: c2 takes A (warm); D launched (Ready 60 s). 60 s: c2 ends.
    // 62 s: A back, D retired; A stays Ready to 100 s.
    // Idle = Starting + Ready: A 0-10 + B 10-20 + C 15-27 + B 27-32 + A 32-50 + D 50-62 + A 62-100 = 105 s.
    expect(report).toMatchObject({
      arrivals: 3,
      warm: 2,
      waited: 1,
      failed: 0,
      waitP50Ms: 0,
      waitP99Ms: 5000,
      waitMaxMs: 5000,
      idleServerSeconds: 105,
      oracleIdleServerSeconds: 30,
      launches: 4,
      peakServers: 3,
    });
    expect(report.stateSeconds).toMatchObject({ Allocated: 35, Draining: 6 });
    expect(report.idleVsOracle).toBeCloseTo(3.5);
  });

  it('is deterministic for a seed and counts failures past the wait budget', async () => {
    const trace = generateTrace(
      parseGeneratorSpec(
        'gen:seed=7,duration=20m,rate=3/m,burstRate=30/m,burstEvery=5m,burstLength=1m,medianLength=3m',
      ),
    );
    const run = () =>
      simulate({
        trace,
        coldStartMs: 20_000,
        waitBudgetMs: 5000,
        autoscaler: policy('  policy: { type: Buffer, buffer: { bufferSize: 1 } }\n'),
      });
    const [a, b] = [await run(), await run()];
    const { wallMs: _a, ...first } = a;
    const { wallMs: _b, ...second } = b;
    expect(first).toEqual(second);
    expect(a.failed).toBeGreaterThan(0); // a buffer of 1 with a 5 s budget cannot absorb a burst
    expect(a.warm + a.waited + a.failed).toBe(a.arrivals);
    expect(a.idleServerSeconds).toBeGreaterThanOrEqual(0);
  });
});

describe('oracle', () => {
  it('prefers reusing the most recently freed server and caps each gap at one cold start', () => {
    // Frees at 5 s and 0 s (+ flush 0); arrivals at 6 s and 10 s; cold start 5 s. LIFO: gaps 1 and (10 - 0) -> capped 5.
    const t: Trace = {
      name: 't',
      durationMs: 20_000,
      arrivals: [
        { atMs: 0, durationMs: 0 },
        { atMs: 4000, durationMs: 1000 },
        { atMs: 6000, durationMs: 1000 },
        { atMs: 10_000, durationMs: 1000 },
      ],
    };
    // 0 s: fresh, clipped to 0. 4 s: reuse the server freed at 0 s (gap 4). 6 s: reuse the one freed at 5 s (gap 1).
    // 10 s: the latest free is 7 s (gap 3).
    expect(oracleIdleMs(t, 5000, 0)).toBe(0 + 4000 + 1000 + 3000);
  });
});

describe('traces', () => {
  it('round-trip through JSON and name the bad field', () => {
    const t = generateTrace({ seed: 3, durationMs: 600_000 });
    expect(traceFromJson(traceToJson(t), 'x.json')).toEqual(t);
    expect(generateTrace({ seed: 3, durationMs: 600_000 })).toEqual(t);
    expect(() => traceFromJson('{"durationMs": 10, "arrivals": [[1, 2], [0, 1]]}', 'x.json')).toThrow(
      new TraceError('x.json: arrivals[1]: must not come before the previous arrival (0 < 1)'),
    );
    expect(() => parseGeneratorSpec('gen:rate=fast')).toThrow(/generator rate: must be a rate like 2\/m/);
    expect(() => parseGeneratorSpec('gen:colour=red')).toThrow(/unknown key "colour"/);
  });
});
