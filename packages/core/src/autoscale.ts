import type { AutoscalePolicy, PredictivePolicy, SchedulePolicy } from './autoscaler-spec.js';
import { lastCronMatch, nextCronMatch } from './cron.js';

// Autoscaling decisions: pure functions of (fleet status, history, clock time). The loop that feeds them
// (store change feed, timers, the webhook's HTTP call) lives in @smelter-fleet/autoscaler.

/** What the autoscaler sees of a fleet. */
export interface FleetStatusView {
  /** The fleet's current desired replicas (the stored spec). */
  replicas: number;
  starting: number;
  ready: number;
  allocated: number;
  draining: number;
}

/** The last answer of a webhook: what it said, or why it failed. */
export type WebhookReply = { ok: true; scale: boolean; replicas: number } | { ok: false; error: string };

export interface AutoscaleInput {
  /** Epoch ms. */
  now: number;
  fleet: FleetStatusView;
  /** Allocation arrival times (epoch ms), ascending; older than the policies' windows may be left out. */
  arrivals: readonly number[];
  /**
   * When compositions ended (epoch ms, ascending) on servers that are recycled to Ready after their flush: the
   * supply that comes back within a cold start. Empty or absent when the fleet replaces released servers.
   */
  releases?: readonly number[];
  /** Allocation requests now waiting for a Ready server (they found none: RESOURCE_EXHAUSTED). */
  waiting: number;
  /** Last reply of each webhook policy, by its id. */
  webhooks: Readonly<Record<string, WebhookReply>>;
}

export interface Recommendation {
  /** False when the policy does not apply now (Schedule outside its window; a Chain where none applies). */
  applies: boolean;
  replicas: number;
  reason: string;
  /** Set when the policy could not decide (webhook failure): the previous decision is kept. */
  error?: string;
  /** Epoch ms after which the recommendation may change with no new event; absent: only events change it. */
  nextCheckAt?: number;
}

const DAY_MS = 24 * 3_600_000;

const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));
const earliest = (...ts: (number | undefined)[]) => {
  const defined = ts.filter((t): t is number => t !== undefined);
  return defined.length > 0 ? Math.min(...defined) : undefined;
};

/** Servers busy or about to be: Allocated, Draining (they come back or are replaced), and waiting demand. */
export function busyCount(input: AutoscaleInput): number {
  return input.fleet.allocated + input.fleet.draining + input.waiting;
}

/** The replicas `policy` recommends now. Pure. */
export function recommend(policy: AutoscalePolicy, input: AutoscaleInput): Recommendation {
  const busy = busyCount(input);
  switch (policy.type) {
    case 'Buffer': {
      const want = policy.percent ? Math.ceil((busy * 100) / (100 - policy.bufferSize)) : busy + policy.bufferSize;
      const replicas = clamp(want, policy.minReplicas, policy.maxReplicas);
      const size = policy.percent ? `${policy.bufferSize}%` : String(policy.bufferSize);
      return { applies: true, replicas, reason: `buffer ${size} over ${busy} busy${limited(want, replicas)}` };
    }
    case 'Predictive':
      return predictive(policy, input, busy);
    case 'Webhook': {
      const reply = input.webhooks[policy.id];
      const keep = input.fleet.replicas;
      if (!reply) return { applies: true, replicas: keep, reason: 'webhook not answered yet; replicas kept' };
      if (!reply.ok)
        return { applies: true, replicas: keep, reason: 'webhook failed; previous decision kept', error: reply.error };
      if (!reply.scale) return { applies: true, replicas: keep, reason: 'webhook: no scaling' };
      const replicas = clamp(reply.replicas, policy.minReplicas, policy.maxReplicas);
      return { applies: true, replicas, reason: `webhook: ${reply.replicas}${limited(reply.replicas, replicas)}` };
    }
    case 'Schedule':
      return schedule(policy, input);
    case 'Chain': {
      let next: number | undefined;
      for (const item of policy.chain) {
        const r = recommend(item, input);
        next = earliest(next, r.nextCheckAt);
        if (r.applies) return { ...r, reason: `chain ${item.id}: ${r.reason}`, ...optional(earliest(next)) };
      }
      return {
        applies: false,
        replicas: input.fleet.replicas,
        reason: 'no policy of the chain applies',
        ...optional(next),
      };
    }
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const optional = (nextCheckAt: number | undefined) => (nextCheckAt === undefined ? {} : { nextCheckAt });
const limited = (want: number, got: number) => (want === got ? '' : ` (wanted ${want}, limited to ${got})`);

function predictive(policy: PredictivePolicy, input: AutoscaleInput, busy: number): Recommendation {
  const { now } = input;
  const expected = arrivalsPerColdStart(input.arrivals, now, policy.coldStartMs, policy.windowMs);
  const recycled = releasesPerColdStart(input.releases ?? [], now, policy.coldStartMs, policy.windowMs);
  const headroom = netDemandQuantile(expected, recycled, policy.quantile);
  const ready = Math.max(policy.minReady, headroom);
  const want = busy + ready;
  const replicas = clamp(want, policy.minReplicas, policy.maxReplicas);
  const recent = input.arrivals.length > 0 && input.arrivals[input.arrivals.length - 1]! > now - policy.windowMs;
  return {
    applies: true,
    replicas,
    reason: `${ready} ready for ${round2(expected)} arrivals and ${round2(recycled)} recycled per cold start (q${policy.quantile}) + ${busy} busy${limited(want, replicas)}`,
    // While arrivals are in the window, the estimate moves as they age: look again a few times per cold start.
    ...(recent && { nextCheckAt: now + Math.max(250, Math.round(policy.coldStartMs / 4)) }),
  };
}

/**
 * Arrivals expected in one cold start: the larger of the window's mean and the count of the last cold start
 * (so a burst shows within one cold start, and a lull does not hide the window's load).
 */
export function arrivalsPerColdStart(
  arrivals: readonly number[],
  now: number,
  coldStartMs: number,
  windowMs: number,
): number {
  const slices = Math.max(1, Math.floor(windowMs / coldStartMs));
  let inWindow = 0;
  let latest = 0;
  for (let i = arrivals.length - 1; i >= 0; i--) {
    const age = now - arrivals[i]!;
    if (age < 0) continue;
    if (age >= slices * coldStartMs) break;
    inWindow++;
    if (age < coldStartMs) latest++;
  }
  return Math.max(inWindow / slices, latest);
}

/** Mean releases per cold start over the window: servers expected back Ready within the next cold start. */
export function releasesPerColdStart(
  releases: readonly number[],
  now: number,
  coldStartMs: number,
  windowMs: number,
): number {
  const slices = Math.max(1, Math.floor(windowMs / coldStartMs));
  let n = 0;
  for (let i = releases.length - 1; i >= 0; i--) {
    const age = now - releases[i]!;
    if (age < 0) continue;
    if (age >= slices * coldStartMs) break;
    n++;
  }
  return n / slices;
}

/**
 * Smallest k >= 0 with P(A - R <= k) >= q, A ~ Poisson(arrivals), R ~ Poisson(recycled): the Ready servers that
 * cover the arrivals of one cold start with probability q, counting the recycled ones that come back meanwhile.
 */
export function netDemandQuantile(arrivals: number, recycled: number, q: number): number {
  if (recycled <= 0) return poissonQuantile(arrivals, q);
  if (arrivals + recycled > 500)
    return Math.max(0, Math.ceil(arrivals - recycled + normalQuantile(q) * Math.sqrt(arrivals + recycled)));
  const kMax = poissonQuantile(arrivals, q); // R >= 0, so never more
  const jMax = Math.ceil(recycled + 10 * Math.sqrt(recycled) + 10);
  const pmf = (mean: number, n: number) => {
    const out = new Array<number>(n + 1);
    out[0] = Math.exp(-mean);
    for (let i = 1; i <= n; i++) out[i] = (out[i - 1]! * mean) / i;
    return out;
  };
  const pR = pmf(recycled, jMax);
  const cdfA = pmf(arrivals, kMax + jMax);
  for (let i = 1; i < cdfA.length; i++) cdfA[i]! += cdfA[i - 1]!;
  for (let k = 0; k < kMax; k++) {
    let cdf = 0;
    for (let j = 0; j <= jMax; j++) cdf += pR[j]! * cdfA[k + j]!;
    if (cdf >= q) return k;
  }
  return kMax;
}

/** Smallest k with P(Poisson(mean) <= k) >= q. */
export function poissonQuantile(mean: number, q: number): number {
  if (mean <= 0) return 0;
  if (mean > 500) return Math.ceil(mean + normalQuantile(q) * Math.sqrt(mean));
  let k = 0;
  let p = Math.exp(-mean);
  let cdf = p;
  while (cdf < q) {
    k++;
    p *= mean / k;
    cdf += p;
  }
  return k;
}

/** Inverse of the standard normal CDF (Acklam's approximation, relative error < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239,
  ];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  const poly = (cs: number[], x: number) => cs.reduce((acc, k) => acc * x + k, 0);
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return poly(c, q) / (poly(d, q) * q + 1);
  }
  if (p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -poly(c, q) / (poly(d, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (poly(a, r) * q) / (poly(b, r) * r + 1);
}

function schedule(policy: SchedulePolicy, input: AutoscaleInput): Recommendation {
  const { now } = input;
  const keep = input.fleet.replicas;
  if (policy.startAt !== undefined && now < policy.startAt)
    return { applies: false, replicas: keep, reason: 'schedule not started', nextCheckAt: policy.startAt };
  if (policy.endAt !== undefined && now >= policy.endAt)
    return { applies: false, replicas: keep, reason: 'schedule ended' };
  let windowEnd: number | undefined;
  if (policy.cron) {
    const opened = lastCronMatch(policy.cron, now, policy.durationMs - 1);
    if (opened === undefined) {
      const next = nextCronMatch(policy.cron, now, 8 * DAY_MS) ?? now + DAY_MS;
      return {
        applies: false,
        replicas: keep,
        reason: `outside the schedule "${policy.cron.source}"`,
        nextCheckAt: earliest(next, policy.endAt)!,
      };
    }
    windowEnd = opened + policy.durationMs;
  }
  const inner = recommend(policy.policy, input);
  return {
    ...inner,
    reason: `in schedule: ${inner.reason}`,
    ...optional(earliest(inner.nextCheckAt, windowEnd, policy.endAt)),
  };
}

/** One past recommendation, for the scale-down stabilisation window. */
export interface StabilizationSample {
  /** Epoch ms. */
  at: number;
  replicas: number;
}

export interface Stabilized {
  replicas: number;
  /** The samples still inside the window, this one included: keep them for the next call. */
  samples: StabilizationSample[];
  /** Epoch ms when the result may drop with no new recommendation; absent if it cannot. */
  nextCheckAt?: number;
}

/**
 * Kubernetes HPA's scale-down stabilisation: the result is the highest recommendation over the last
 * `windowMs`, so scale-up is immediate and scale-down waits until the window has seen only lower values.
 */
export function stabilize(
  samples: readonly StabilizationSample[],
  now: number,
  windowMs: number,
  recommended: number,
): Stabilized {
  const kept = samples.filter((s) => s.at > now - windowMs);
  kept.push({ at: now, replicas: recommended });
  let replicas = recommended;
  let nextCheckAt: number | undefined;
  for (const s of kept) {
    if (s.replicas > replicas) replicas = s.replicas;
    if (s.replicas > recommended) nextCheckAt = earliest(nextCheckAt, s.at + windowMs);
  }
  return { replicas, samples: compact(kept), ...optional(nextCheckAt) };
}

// Only samples that can still be the maximum of a later window matter: drop any followed by a higher or equal one.
function compact(samples: StabilizationSample[]): StabilizationSample[] {
  const out: StabilizationSample[] = [];
  for (const s of samples) {
    while (out.length > 0 && out[out.length - 1]!.replicas <= s.replicas) out.pop();
    out.push(s);
  }
  return out;
}

/** Agones' FleetAutoscaleReview request body for a fleet (webhook policies). */
export function fleetAutoscaleReview(uid: string, fleetName: string, fleet: FleetStatusView) {
  return {
    apiVersion: 'autoscaling.agones.dev/v1',
    kind: 'FleetAutoscaleReview',
    request: {
      uid,
      name: fleetName,
      namespace: 'default',
      status: {
        replicas: fleet.replicas,
        readyReplicas: fleet.ready,
        reservedReplicas: 0,
        allocatedReplicas: fleet.allocated,
        // Not in Agones: the states it lacks.
        startingReplicas: fleet.starting,
        drainingReplicas: fleet.draining,
      },
    },
  };
}

/** Reads a webhook's FleetAutoscaleReview response; throws an Error naming the bad field. */
export function parseFleetAutoscaleReviewResponse(body: unknown, uid: string): { scale: boolean; replicas: number } {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(body)) throw new Error('response body must be a JSON object (FleetAutoscaleReview)');
  const response = body.response;
  if (!isObj(response)) throw new Error('response: missing (expected {uid, scale, replicas})');
  if (response.uid !== undefined && response.uid !== uid)
    throw new Error(`response.uid: ${JSON.stringify(response.uid)} does not match the request's ${uid}`);
  if (typeof response.scale !== 'boolean')
    throw new Error(`response.scale: must be a boolean (got ${JSON.stringify(response.scale)})`);
  const replicas = response.replicas ?? 0;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > 10_000)
    throw new Error(`response.replicas: must be an integer from 0 to 10000 (got ${JSON.stringify(replicas)})`);
  if (response.scale && response.replicas === undefined)
    throw new Error('response.replicas: required when scale is true');
  return { scale: response.scale, replicas };
}
