import { describe, expect, it } from '@jest/globals';
import {
  arrivalsPerColdStart,
  netDemandQuantile,
  releasesPerColdStart,
  fleetAutoscaleReview,
  parseFleetAutoscaleReviewResponse,
  poissonQuantile,
  recommend,
  stabilize,
  type AutoscaleInput,
  type FleetStatusView,
} from './autoscale.js';
import { policyFromObject } from './autoscaler-spec.js';

const T0 = Date.parse('2026-11-24T10:00:00Z'); // a Tuesday
const policy = (o: unknown) => policyFromObject(o, ['policy']);
const input = (fleet: Partial<FleetStatusView>, extra: Partial<AutoscaleInput> = {}): AutoscaleInput => ({
  now: T0,
  fleet: { replicas: 3, starting: 0, ready: 0, allocated: 0, draining: 0, ...fleet },
  arrivals: [],
  waiting: 0,
  webhooks: {},
  ...extra,
});

describe('Buffer', () => {
  it('keeps bufferSize Ready beyond Allocated + Draining + waiting, within min/max', () => {
    const p = policy({ type: 'Buffer', buffer: { bufferSize: 2, minReplicas: 1, maxReplicas: 10 } });
    expect(recommend(p, input({ allocated: 3, draining: 1 })).replicas).toBe(6);
    expect(recommend(p, input({ allocated: 3 }, { waiting: 2 })).replicas).toBe(7);
    expect(recommend(p, input({ allocated: 9 })).replicas).toBe(10);
    expect(recommend(p, input({ allocated: 9 })).reason).toMatch(/wanted 11, limited to 10/);
  });
  it('reaches zero with bufferSize 0 and minReplicas 0 (Agones #4053), and leaves zero on waiting demand', () => {
    const p = policy({ type: 'Buffer', buffer: { bufferSize: 0, minReplicas: 0 } });
    expect(recommend(p, input({ ready: 3 })).replicas).toBe(0);
    expect(recommend(p, input({ replicas: 0 }, { waiting: 1 })).replicas).toBe(1);
  });
  it('percentage: the buffer is that share of the total', () => {
    const p = policy({ type: 'Buffer', buffer: { bufferSize: '20%', maxReplicas: 100 } });
    expect(recommend(p, input({ allocated: 8 })).replicas).toBe(10);
    expect(recommend(p, input({ allocated: 9 })).replicas).toBe(12); // ceil(11.25)
    expect(recommend(p, input({ allocated: 0 })).replicas).toBe(0);
  });
});

describe('Predictive', () => {
  const p = policy({
    type: 'Predictive',
    predictive: { coldStart: '10s', quantile: 0.99, window: '60s', maxReplicas: 50 },
  });
  it('with no history keeps minReady and asks for no timer', () => {
    const r = recommend(p, input({ allocated: 2 }));
    expect(r.replicas).toBe(2);
    expect(r.nextCheckAt).toBeUndefined();
  });
  it('keeps Ready the high quantile of Poisson arrivals in one cold start, at max(window mean, last cold start), plus busy', () => {
    // 60 s window = 6 slices of 10 s. A burst: 5 arrivals in the last 10 s, 1 older -> max(6 / 6, 5) = 5.
    const burst = [T0 - 35_000, T0 - 9000, T0 - 7000, T0 - 5000, T0 - 3000, T0 - 1000];
    expect(arrivalsPerColdStart(burst, T0, 10_000, 60_000)).toBe(5);
    // A lull after load: 12 arrivals earlier in the window, none lately -> the mean, 2.
    const lull = Array.from({ length: 12 }, (_, i) => T0 - 59_000 + i * 3000);
    expect(arrivalsPerColdStart(lull, T0, 10_000, 60_000)).toBe(2);
    const r = recommend(p, input({ allocated: 6 }, { arrivals: burst }));
    expect(poissonQuantile(5, 0.99)).toBe(11);
    expect(r.replicas).toBe(6 + 11);
    expect(r.reason).toBe('11 ready for 5 arrivals and 0 recycled per cold start (q0.99) + 6 busy');
    expect(r.nextCheckAt).toBe(T0 + 2500);
    // Once the arrivals have left the window, the Ready target falls back to minReady.
    expect(recommend(p, input({ allocated: 6 }, { arrivals: burst, now: T0 + 61_000 })).replicas).toBe(6);
  });
  it('counts servers recycled within a cold start as supply (A - R at the quantile)', () => {
    // 12 releases over the 60 s window: 2 per cold start come back Ready meanwhile.
    const releases = Array.from({ length: 12 }, (_, i) => T0 - 59_000 + i * 5000);
    expect(releasesPerColdStart(releases, T0, 10_000, 60_000)).toBe(2);
    expect(netDemandQuantile(5, 0, 0.99)).toBe(poissonQuantile(5, 0.99));
    // P(A - R <= k) with A ~ Poisson(5), R ~ Poisson(2): 9 is the first k reaching 0.99 (0.99007; k = 8 gives 0.97727).
    expect(netDemandQuantile(5, 2, 0.99)).toBe(9);
    expect(netDemandQuantile(0, 2, 0.99)).toBe(0);
    const burst = [T0 - 9000, T0 - 7000, T0 - 5000, T0 - 3000, T0 - 1000];
    expect(recommend(p, input({ allocated: 6 }, { arrivals: burst, releases })).replicas).toBe(6 + 9);
    // Large means use the normal approximation.
    expect(netDemandQuantile(600, 100, 0.5)).toBe(500);
  });
  it('poissonQuantile agrees with known values', () => {
    expect(poissonQuantile(0, 0.999)).toBe(0);
    expect(poissonQuantile(1, 0.5)).toBe(1);
    expect(poissonQuantile(1, 0.99)).toBe(4);
    expect(poissonQuantile(10, 0.999)).toBe(21);
    expect(poissonQuantile(1000, 0.5)).toBe(1000);
  });
});

describe('Schedule and Chain', () => {
  const chain = policy({
    type: 'Chain',
    chain: [
      {
        id: 'weekday-mornings',
        type: 'Schedule',
        schedule: {
          activePeriod: { startCron: '0 8 * * 1-5', duration: '4h' },
          policy: { type: 'Buffer', buffer: { bufferSize: 5, maxReplicas: 50 } },
        },
      },
      { id: 'default', type: 'Buffer', buffer: { bufferSize: 1 } },
    ],
  });
  it('the first policy that applies wins, by clock time', () => {
    const morning = recommend(chain, input({ allocated: 2 }));
    expect(morning).toMatchObject({ applies: true, replicas: 7, nextCheckAt: Date.parse('2026-11-24T12:00:00Z') });
    expect(morning.reason).toMatch(/^chain weekday-mornings: in schedule: buffer 5/);
    const noon = recommend(chain, input({ allocated: 2 }, { now: Date.parse('2026-11-24T12:00:00Z') }));
    expect(noon.replicas).toBe(3);
    expect(noon.reason).toMatch(/^chain default/);
    // Outside its window, the schedule still says when it opens next.
    expect(noon.nextCheckAt).toBe(Date.parse('2026-11-25T08:00:00Z'));
    const sunday = recommend(chain, input({ allocated: 2 }, { now: Date.parse('2026-11-29T09:00:00Z') }));
    expect(sunday.replicas).toBe(3);
  });
  it('a Schedule alone outside its window does not apply and keeps replicas; between bounds it', () => {
    const s = policy({
      type: 'Schedule',
      schedule: {
        between: { start: '2026-11-24T11:00:00Z', end: '2026-11-24T13:00:00Z' },
        policy: { type: 'Buffer', buffer: { bufferSize: 4 } },
      },
    });
    expect(recommend(s, input({ replicas: 9 }))).toMatchObject({
      applies: false,
      replicas: 9,
      nextCheckAt: Date.parse('2026-11-24T11:00:00Z'),
    });
    expect(recommend(s, input({ replicas: 9 }, { now: Date.parse('2026-11-24T11:30:00Z') })).replicas).toBe(4);
    expect(recommend(s, input({ replicas: 9 }, { now: Date.parse('2026-11-24T13:00:00Z') })).applies).toBe(false);
  });
});

describe('Webhook', () => {
  const p = policy({ type: 'Webhook', webhook: { url: 'http://127.0.0.1:1/scale', maxReplicas: 20 } });
  const id = 'policy.webhook';
  it('uses the reply, clamped; a failed reply keeps the previous decision and carries the error', () => {
    expect(recommend(p, input({}, { webhooks: { [id]: { ok: true, scale: true, replicas: 12 } } })).replicas).toBe(12);
    expect(recommend(p, input({}, { webhooks: { [id]: { ok: true, scale: true, replicas: 99 } } })).replicas).toBe(20);
    expect(
      recommend(p, input({ replicas: 5 }, { webhooks: { [id]: { ok: true, scale: false, replicas: 0 } } })).replicas,
    ).toBe(5);
    expect(
      recommend(p, input({ replicas: 5 }, { webhooks: { [id]: { ok: false, error: 'timed out' } } })),
    ).toMatchObject({
      replicas: 5,
      error: 'timed out',
      reason: 'webhook failed; previous decision kept',
    });
  });
  it('speaks Agones FleetAutoscaleReview and names the bad field of a reply', () => {
    const review = fleetAutoscaleReview('u1', 'f', { replicas: 3, starting: 1, ready: 1, allocated: 1, draining: 0 });
    expect(review.request.status).toMatchObject({ replicas: 3, readyReplicas: 1, allocatedReplicas: 1 });
    expect(parseFleetAutoscaleReviewResponse({ response: { uid: 'u1', scale: true, replicas: 4 } }, 'u1')).toEqual({
      scale: true,
      replicas: 4,
    });
    expect(() => parseFleetAutoscaleReviewResponse({ response: { uid: 'u1', scale: 'yes' } }, 'u1')).toThrow(
      /^response.scale/,
    );
    expect(() =>
      parseFleetAutoscaleReviewResponse({ response: { uid: 'u1', scale: true, replicas: -1 } }, 'u1'),
    ).toThrow(/^response.replicas/);
    expect(() =>
      parseFleetAutoscaleReviewResponse({ response: { uid: 'zz', scale: true, replicas: 1 } }, 'u1'),
    ).toThrow(/^response.uid/);
    expect(() => parseFleetAutoscaleReviewResponse([], 'u1')).toThrow(/JSON object/);
  });
});

describe('stabilize (scale-down window, scale-up at once)', () => {
  it('takes the max over the window and says when it may drop', () => {
    let s = stabilize([], T0, 60_000, 5);
    expect(s.replicas).toBe(5);
    s = stabilize(s.samples, T0 + 10_000, 60_000, 2);
    expect(s).toMatchObject({ replicas: 5, nextCheckAt: T0 + 60_000 });
    s = stabilize(s.samples, T0 + 20_000, 60_000, 8);
    expect(s.replicas).toBe(8);
    expect(s.nextCheckAt).toBeUndefined();
    s = stabilize(s.samples, T0 + 79_999, 60_000, 1);
    expect(s.replicas).toBe(8);
    s = stabilize(s.samples, T0 + 80_000, 60_000, 1);
    expect(s.replicas).toBe(1);
    expect(s.samples.length).toBeLessThanOrEqual(2);
  });
});
