import { parseDurationMs } from '@smelter-fleet/core';

/** One composition of a trace: when it asks for a server and how long it keeps it. */
export interface TraceArrival {
  /** Ms from the start of the trace. */
  atMs: number;
  /** How long the composition runs once it has a server, ms. */
  durationMs: number;
}

/** A composition-arrival trace. */
export interface Trace {
  name: string;
  /** Length of the measured period, ms; arrivals fall in [0, durationMs). */
  durationMs: number;
  /** Sorted by atMs. */
  arrivals: TraceArrival[];
  /** The generator spec it came from, if generated. */
  generator?: string;
}

/** Parameters of the seeded generator (all times in ms, rates per second). */
export interface TraceGeneratorOptions {
  seed: number;
  durationMs: number;
  /** Background arrival rate, per second. */
  rate: number;
  /** With `periodMs`: the background rate swings from `rate` (at time 0) to this and back, per second. */
  peakRate: number;
  /** Period of the background swing (a day, compressed), ms; 0: no swing. */
  periodMs: number;
  /** Extra arrival rate during a burst, per second. */
  burstRate: number;
  /** Mean time between burst starts, ms (0: no bursts). */
  burstEveryMs: number;
  /** Length of a burst, ms. */
  burstLengthMs: number;
  /** Median composition length (log-normal, sigma `lengthSigma`), ms. */
  medianLengthMs: number;
  lengthSigma: number;
  minLengthMs: number;
  maxLengthMs: number;
}

export const DEFAULT_GENERATOR: TraceGeneratorOptions = {
  seed: 1,
  durationMs: 2 * 3_600_000,
  rate: 2 / 60,
  peakRate: 2 / 60,
  periodMs: 0,
  burstRate: 20 / 60,
  burstEveryMs: 20 * 60_000,
  burstLengthMs: 3 * 60_000,
  medianLengthMs: 15 * 60_000,
  lengthSigma: 1,
  minLengthMs: 60_000,
  maxLengthMs: 4 * 3_600_000,
};

/** A bad trace or generator spec; `message` names the field. */
export class TraceError extends Error {
  override readonly name = 'TraceError';
}

/** mulberry32: a small seeded PRNG in [0, 1), the same sequence on every platform for a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Bursty arrivals (a Poisson background plus Poisson-timed bursts of a higher rate), composition lengths
 * log-normal between minutes and hours. Deterministic for a seed.
 */
export function generateTrace(options: Partial<TraceGeneratorOptions> = {}, name?: string): Trace {
  const o = { ...DEFAULT_GENERATOR, ...options };
  const random = seededRandom(o.seed);
  const exp = (ratePerMs: number) => -Math.log(1 - random()) / ratePerMs;
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const times: number[] = [];
  const poisson = (from: number, to: number, ratePerSecond: number) => {
    if (ratePerSecond <= 0) return;
    for (let t = from + exp(ratePerSecond / 1000); t < to; t += exp(ratePerSecond / 1000)) times.push(t);
  };
  if (o.periodMs > 0 && o.peakRate > o.rate) {
    // A swinging rate, by thinning a Poisson process at the peak rate.
    const at = (t: number) => o.rate + ((o.peakRate - o.rate) * (1 - Math.cos((2 * Math.PI * t) / o.periodMs))) / 2;
    for (let t = exp(o.peakRate / 1000); t < o.durationMs; t += exp(o.peakRate / 1000))
      if (random() < at(t) / o.peakRate) times.push(t);
  } else poisson(0, o.durationMs, o.rate);
  if (o.burstEveryMs > 0)
    for (let b = exp(1 / o.burstEveryMs); b < o.durationMs; b += exp(1 / o.burstEveryMs))
      poisson(b, Math.min(o.durationMs, b + o.burstLengthMs), o.burstRate);
  times.sort((a, b) => a - b);
  const arrivals = times.map((t) => ({
    atMs: Math.floor(t),
    durationMs: Math.round(
      Math.min(o.maxLengthMs, Math.max(o.minLengthMs, o.medianLengthMs * Math.exp(o.lengthSigma * normal()))),
    ),
  }));
  return { name: name ?? `generated-seed${o.seed}`, durationMs: o.durationMs, arrivals };
}

const RATE = /^(\d+(?:\.\d+)?)\/(s|m|h)$/;
const PER = { s: 1, m: 60, h: 3600 } as const;

/**
 * Parses a generator spec such as `gen:seed=3,duration=2h,rate=2/m,burstRate=20/m,burstEvery=20m,burstLength=3m,
 * medianLength=15m`. Unknown keys and bad values throw TraceError naming the key.
 */
export function parseGeneratorSpec(spec: string): TraceGeneratorOptions {
  if (!spec.startsWith('gen:') && spec !== 'gen')
    throw new TraceError(`"${spec}" is not a generator spec (gen:key=value,...)`);
  const o: TraceGeneratorOptions = { ...DEFAULT_GENERATOR };
  const body = spec.slice(4).trim();
  for (const pair of body === '' ? [] : body.split(',')) {
    const [key, value, extra] = pair.split('=').map((s) => s.trim());
    if (!key || value === undefined || extra !== undefined)
      throw new TraceError(`generator: "${pair}" must be key=value`);
    const dur = () => {
      const ms = parseDurationMs(value);
      if (ms === undefined)
        throw new TraceError(`generator ${key}: must be a duration like 30s, 5m or 2h (got "${value}")`);
      return ms;
    };
    const rate = () => {
      const m = RATE.exec(value);
      if (!m) throw new TraceError(`generator ${key}: must be a rate like 2/m, 0.5/s or 30/h (got "${value}")`);
      return Number(m[1]) / PER[m[2] as keyof typeof PER];
    };
    const number = (min: number) => {
      const n = Number(value);
      if (!Number.isFinite(n) || n < min)
        throw new TraceError(`generator ${key}: must be a number >= ${min} (got "${value}")`);
      return n;
    };
    switch (key) {
      case 'seed':
        o.seed = Math.floor(number(0));
        break;
      case 'duration':
        o.durationMs = dur();
        break;
      case 'rate':
        o.rate = rate();
        break;
      case 'peakRate':
        o.peakRate = rate();
        break;
      case 'period':
        o.periodMs = dur();
        break;
      case 'burstRate':
        o.burstRate = rate();
        break;
      case 'burstEvery':
        o.burstEveryMs = dur();
        break;
      case 'burstLength':
        o.burstLengthMs = dur();
        break;
      case 'medianLength':
        o.medianLengthMs = dur();
        break;
      case 'lengthSigma':
        o.lengthSigma = number(0);
        break;
      case 'minLength':
        o.minLengthMs = dur();
        break;
      case 'maxLength':
        o.maxLengthMs = dur();
        break;
      default:
        throw new TraceError(
          `generator: unknown key "${key}" (known: seed, duration, rate, peakRate, period, burstRate, burstEvery, burstLength, medianLength, lengthSigma, minLength, maxLength)`,
        );
    }
  }
  if (o.durationMs <= 0) throw new TraceError('generator duration: must be more than 0');
  if (o.periodMs > 0 && o.peakRate < o.rate) throw new TraceError('generator peakRate: must be at least rate');
  if (o.minLengthMs > o.maxLengthMs) throw new TraceError('generator minLength: must not exceed maxLength');
  return o;
}

/** The JSON form of a trace file: arrivals as [atMs, durationMs] pairs, to keep files small. */
export function traceToJson(trace: Trace): string {
  const head = {
    name: trace.name,
    durationMs: trace.durationMs,
    ...(trace.generator && { generator: trace.generator }),
  };
  const rows = trace.arrivals.map((a) => `[${a.atMs},${a.durationMs}]`);
  return `${JSON.stringify(head).slice(0, -1)},"arrivals":[\n${rows.join(',\n')}\n]}\n`;
}

/** Reads a trace file's JSON; throws TraceError naming the field (e.g. `arrivals[3]`). */
export function traceFromJson(text: string, file: string): Trace {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TraceError(`${file}: not JSON: ${(err as Error).message}`);
  }
  const bad = (field: string, why: string) => new TraceError(`${file}: ${field}: ${why}`);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('(top)', 'must be an object');
  const o = doc as Record<string, unknown>;
  const name = typeof o.name === 'string' && o.name !== '' ? o.name : file;
  if (typeof o.durationMs !== 'number' || !(o.durationMs > 0))
    throw bad('durationMs', 'must be a positive number of ms');
  if (!Array.isArray(o.arrivals)) throw bad('arrivals', 'must be a list of [atMs, durationMs]');
  let last = 0;
  const arrivals = o.arrivals.map((row: unknown, i): TraceArrival => {
    if (
      !Array.isArray(row) ||
      row.length !== 2 ||
      !row.every((n) => typeof n === 'number' && Number.isFinite(n) && n >= 0)
    )
      throw bad(`arrivals[${i}]`, `must be [atMs, durationMs], two numbers >= 0 (got ${JSON.stringify(row)})`);
    const [atMs, durationMs] = row as [number, number];
    if (atMs < last) throw bad(`arrivals[${i}]`, `must not come before the previous arrival (${atMs} < ${last})`);
    if (atMs >= (o.durationMs as number)) throw bad(`arrivals[${i}]`, `at ${atMs} ms is past durationMs`);
    last = atMs;
    return { atMs, durationMs };
  });
  return {
    name,
    durationMs: o.durationMs,
    arrivals,
    ...(typeof o.generator === 'string' && { generator: o.generator }),
  };
}
