// A small 5-field cron matcher (minute hour day-of-month month day-of-week), evaluated in UTC.
// Supports `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`; day-of-week 0-7 (0 and 7 = Sunday).
// As in Vixie cron, when both day fields are restricted a day matches if either does.

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

const MINUTE_MS = 60_000;

/** A parsed cron expression. */
export interface Cron {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0-6, Sunday = 0. */
  readonly weekdays: ReadonlySet<number>;
  readonly daysRestricted: boolean;
  readonly weekdaysRestricted: boolean;
}

/** A cron expression that does not parse; `message` says which field and why. */
export class CronError extends Error {
  override readonly name = 'CronError';
}

export function parseCron(source: string): Cron {
  const parts = source.trim().split(/\s+/);
  if (parts.length !== 5)
    throw new CronError(
      `"${source}" must have 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`,
    );
  const sets = parts.map((part, i) => parseField(part, FIELDS[i]!));
  const weekdays = new Set([...sets[4]!].map((d) => d % 7));
  return {
    source,
    minutes: sets[0]!,
    hours: sets[1]!,
    days: sets[2]!,
    months: sets[3]!,
    weekdays,
    daysRestricted: parts[2] !== '*',
    weekdaysRestricted: parts[4] !== '*',
  };
}

function parseField(part: string, field: (typeof FIELDS)[number]): Set<number> {
  const out = new Set<number>();
  const bad = (why: string) => new CronError(`${field.name} field "${part}": ${why}`);
  const num = (s: string) => {
    if (!/^\d+$/.test(s)) throw bad(`"${s}" is not a number`);
    const n = Number(s);
    if (n < field.min || n > field.max) throw bad(`${n} is out of range ${field.min}-${field.max}`);
    return n;
  };
  for (const item of part.split(',')) {
    const [range, stepText, extra] = item.split('/');
    if (extra !== undefined || range === undefined || range === '') throw bad('malformed');
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1 || !/^\d+$/.test(stepText ?? '1'))
      throw bad(`step "${stepText}" must be a positive integer`);
    let lo: number;
    let hi: number;
    if (range === '*') {
      lo = field.min;
      hi = field.max;
    } else if (range.includes('-')) {
      const [a, b, more] = range.split('-');
      if (more !== undefined || a === undefined || b === undefined) throw bad('malformed range');
      lo = num(a);
      hi = num(b);
      if (lo > hi) throw bad(`range ${lo}-${hi} is backwards`);
    } else {
      lo = num(range);
      hi = stepText === undefined ? lo : field.max;
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

/** Whether the minute containing `atMs` (epoch ms, UTC) matches. */
export function cronMatches(cron: Cron, atMs: number): boolean {
  const d = new Date(atMs);
  if (!cron.minutes.has(d.getUTCMinutes()) || !cron.hours.has(d.getUTCHours())) return false;
  if (!cron.months.has(d.getUTCMonth() + 1)) return false;
  const dom = cron.days.has(d.getUTCDate());
  const dow = cron.weekdays.has(d.getUTCDay());
  if (cron.daysRestricted && cron.weekdaysRestricted) return dom || dow;
  return dom && dow;
}

/** Start (epoch ms) of the latest matching minute at or before `atMs`, looking back at most `lookBackMs`. */
export function lastCronMatch(cron: Cron, atMs: number, lookBackMs: number): number | undefined {
  const start = Math.floor(atMs / MINUTE_MS) * MINUTE_MS;
  for (let t = start; t >= atMs - lookBackMs; t -= MINUTE_MS) if (cronMatches(cron, t)) return t;
  return undefined;
}

/** Start (epoch ms) of the first matching minute after `atMs`, looking ahead at most `lookAheadMs`. */
export function nextCronMatch(cron: Cron, atMs: number, lookAheadMs: number): number | undefined {
  const start = Math.floor(atMs / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  for (let t = start; t <= atMs + lookAheadMs; t += MINUTE_MS) if (cronMatches(cron, t)) return t;
  return undefined;
}
