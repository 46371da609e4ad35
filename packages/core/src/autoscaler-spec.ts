import { CronError, parseCron, type Cron } from './cron.js';
import { FLEET_KIND, FLEET_PARSERS, parseManifest, type FleetSpec } from './fleet-spec.js';
import {
  checkUniqueNames,
  documentHeader,
  duration,
  FleetSpecError,
  int,
  Invalid,
  isObj,
  object,
  oneOf,
  parseDocuments,
  show,
  str,
  type Path,
} from './spec-parse.js';

export const AUTOSCALER_KIND = 'SmelterFleetAutoscaler';

/** Keep `bufferSize` Ready servers beyond the busy ones (Allocated + Draining + waiting demand). */
export interface BufferPolicy {
  type: 'Buffer';
  /** Absolute count, or a percentage of the total when `percent`. */
  bufferSize: number;
  percent: boolean;
  minReplicas: number;
  maxReplicas: number;
}

/**
 * Keep Ready what arrives during one cold start at a high quantile of the recent arrival rate, plus the busy
 * servers: bursts are served warm without a standing buffer sized for the worst hour.
 */
export interface PredictivePolicy {
  type: 'Predictive';
  /** Time from launch to Ready, ms. */
  coldStartMs: number;
  /** Quantile of Poisson arrivals at the estimated rate kept Ready, in (0, 1). */
  quantile: number;
  /** History looked at, ms. */
  windowMs: number;
  /** Ready servers kept even with no recent arrival. */
  minReady: number;
  minReplicas: number;
  maxReplicas: number;
}

/** Asks an HTTP endpoint (Agones FleetAutoscaleReview shape). */
export interface WebhookPolicy {
  type: 'Webhook';
  /** Identifies this webhook's replies in the autoscaler's inputs (its path in the spec). */
  id: string;
  url: string;
  /** A reply slower than this is a failure, ms. */
  timeoutMs: number;
  minReplicas: number;
  maxReplicas: number;
}

/** Applies `policy` only inside cron windows (UTC) and between optional start/end times. */
export interface SchedulePolicy {
  type: 'Schedule';
  /** Epoch ms; the schedule does not apply before. */
  startAt?: number;
  /** Epoch ms; the schedule does not apply from then on. */
  endAt?: number;
  /** Each match opens a window of `durationMs`; absent: always active between start and end. */
  cron?: Cron;
  durationMs: number;
  policy: AutoscalePolicy;
}

/** The first policy that applies wins. */
export interface ChainPolicy {
  type: 'Chain';
  chain: (AutoscalePolicy & { id: string })[];
}

export type AutoscalePolicy = BufferPolicy | PredictivePolicy | WebhookPolicy | SchedulePolicy | ChainPolicy;

export interface AutoscalerSpec {
  name: string;
  fleetName: string;
  policy: AutoscalePolicy;
  /** Scale down only to the highest recommendation over this window (as Kubernetes HPA), ms. Default 60000. */
  scaleDownStabilizationMs: number;
  /** Event: react to every allocation and server change at once. FixedInterval: poll (Agones-style). */
  sync: { type: 'Event' } | { type: 'FixedInterval'; intervalMs: number };
}

const MAX_REPLICAS = 10_000;
const POLICY_TYPES = ['Buffer', 'Predictive', 'Webhook', 'Schedule', 'Chain'] as const;

function num(v: unknown, path: Path, fallback: number, min: number, max: number, exclusive = false): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (exclusive && (v === min || v === max)))
    throw new Invalid(
      path,
      `must be a number ${exclusive ? 'strictly ' : ''}between ${min} and ${max} (got ${show(v)})`,
    );
  return v;
}

function minMax(o: Record<string, unknown>, path: Path): { minReplicas: number; maxReplicas: number } {
  const minReplicas = int(o.minReplicas, [...path, 'minReplicas'], 0, 0, MAX_REPLICAS);
  const maxReplicas = int(o.maxReplicas, [...path, 'maxReplicas'], 100, 0, MAX_REPLICAS);
  if (maxReplicas < minReplicas)
    throw new Invalid([...path, 'maxReplicas'], `must be at least minReplicas (${minReplicas}), got ${maxReplicas}`);
  return { minReplicas, maxReplicas };
}

function time(v: unknown, path: Path): number | undefined {
  if (v === undefined) return undefined;
  const ms = v instanceof Date ? v.getTime() : typeof v === 'string' ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms))
    throw new Invalid(path, `must be an RFC 3339 time like 2026-11-24T08:00:00Z (got ${show(v)})`);
  return ms;
}

/** Validates one policy mapping; `path` is where it sits in the document. */
export function policyFromObject(v: unknown, path: Path, extraKeys: readonly string[] = []): AutoscalePolicy {
  if (!isObj(v)) throw new Invalid(path, `must be a mapping with a type (got ${show(v)})`);
  if (v.type === undefined) throw new Invalid([...path, 'type'], `is required: one of ${POLICY_TYPES.join(', ')}`);
  const type = oneOf(v.type, [...path, 'type'], POLICY_TYPES, 'Buffer');
  const key = type.charAt(0).toLowerCase() + type.slice(1);
  const top = object(v, path, ['type', key, ...extraKeys]);
  const p = [...path, key];
  switch (type) {
    case 'Buffer': {
      const o = object(top.buffer, p, ['bufferSize', 'minReplicas', 'maxReplicas']);
      const raw = o.bufferSize;
      let bufferSize: number;
      let percent = false;
      if (typeof raw === 'string' && /^\d+%$/.test(raw)) {
        bufferSize = Number(raw.slice(0, -1));
        percent = true;
        if (bufferSize < 1 || bufferSize > 99)
          throw new Invalid([...p, 'bufferSize'], `percentage must be 1% to 99% (got ${raw})`);
      } else {
        if (raw === undefined)
          throw new Invalid([...p, 'bufferSize'], 'is required: a count like 2 or a percentage like "20%"');
        if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > MAX_REPLICAS)
          throw new Invalid(
            [...p, 'bufferSize'],
            `must be a count (0 or more) or a percentage like "20%" (got ${show(raw)})`,
          );
        bufferSize = raw;
      }
      return { type, bufferSize, percent, ...minMax(o, p) };
    }
    case 'Predictive': {
      const o = object(top.predictive, p, [
        'coldStart',
        'quantile',
        'window',
        'minReady',
        'minReplicas',
        'maxReplicas',
      ]);
      const coldStartMs = duration(o.coldStart, [...p, 'coldStart'], 30_000, 3_600_000);
      if (coldStartMs < 100) throw new Invalid([...p, 'coldStart'], 'must be at least 100ms');
      const windowMs = duration(o.window, [...p, 'window'], 15 * 60_000, 24 * 3_600_000);
      if (windowMs < coldStartMs) throw new Invalid([...p, 'window'], 'must be at least coldStart');
      return {
        type,
        coldStartMs,
        quantile: num(o.quantile, [...p, 'quantile'], 0.999, 0, 1, true),
        windowMs,
        minReady: int(o.minReady, [...p, 'minReady'], 0, 0, MAX_REPLICAS),
        ...minMax(o, p),
      };
    }
    case 'Webhook': {
      const o = object(top.webhook, p, ['url', 'timeout', 'minReplicas', 'maxReplicas']);
      const url = str(o.url, [...p, 'url']);
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new Invalid([...p, 'url'], `must be an absolute http(s) URL (got ${show(url)})`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
        throw new Invalid([...p, 'url'], `must be an http or https URL (got ${show(url)})`);
      const timeoutMs = duration(o.timeout, [...p, 'timeout'], 2000, 60_000);
      if (timeoutMs < 10) throw new Invalid([...p, 'timeout'], 'must be at least 10ms');
      return { type, id: p.join('.'), url, timeoutMs, ...minMax(o, p) };
    }
    case 'Schedule': {
      const o = object(top.schedule, p, ['between', 'activePeriod', 'policy']);
      const between = object(o.between, [...p, 'between'], ['start', 'end']);
      const active = object(o.activePeriod, [...p, 'activePeriod'], ['startCron', 'duration']);
      const startAt = time(between.start, [...p, 'between', 'start']);
      const endAt = time(between.end, [...p, 'between', 'end']);
      if (startAt !== undefined && endAt !== undefined && endAt <= startAt)
        throw new Invalid([...p, 'between', 'end'], 'must be after start');
      let cron: Cron | undefined;
      if (active.startCron !== undefined) {
        const text = str(active.startCron, [...p, 'activePeriod', 'startCron']);
        try {
          cron = parseCron(text);
        } catch (err) {
          if (err instanceof CronError) throw new Invalid([...p, 'activePeriod', 'startCron'], err.message);
          throw err;
        }
      }
      const durationMs = duration(active.duration, [...p, 'activePeriod', 'duration'], 0, 31 * 24 * 3_600_000);
      if (cron && durationMs < 60_000)
        throw new Invalid([...p, 'activePeriod', 'duration'], 'is required with startCron: at least 1m, e.g. 10h');
      if (o.policy === undefined)
        throw new Invalid([...p, 'policy'], 'is required: the policy applied inside the schedule');
      return {
        type,
        ...(startAt !== undefined && { startAt }),
        ...(endAt !== undefined && { endAt }),
        ...(cron && { cron }),
        durationMs,
        policy: policyFromObject(o.policy, [...p, 'policy']),
      };
    }
    case 'Chain': {
      const list = top.chain;
      if (!Array.isArray(list) || list.length === 0)
        throw new Invalid(p, 'must be a non-empty list of policies, each with an id');
      const ids = new Set<string>();
      const chain = list.map((item, i) => {
        const policy = policyFromObject(item, [...p, i], ['id']);
        const id = str((item as Record<string, unknown>).id, [...p, i, 'id'], String(i));
        if (ids.has(id)) throw new Invalid([...p, i, 'id'], `"${id}" is used twice in the chain`);
        ids.add(id);
        return { ...policy, id };
      });
      return { type, chain };
    }
  }
}

/** Validates one SmelterFleetAutoscaler document (already parsed to plain data) and fills defaults. */
export function autoscalerSpecFromObject(doc: unknown): AutoscalerSpec {
  const { name, spec } = documentHeader(doc, AUTOSCALER_KIND, ['fleetName', 'policy', 'behavior', 'sync']);
  const fleetName = str(spec.fleetName, ['spec', 'fleetName']);
  if (spec.policy === undefined) throw new Invalid(['spec', 'policy'], 'is required');
  const policy = policyFromObject(spec.policy, ['spec', 'policy']);
  const behavior = object(spec.behavior, ['spec', 'behavior'], ['scaleDownStabilization']);
  const sync = object(spec.sync, ['spec', 'sync'], ['type', 'interval']);
  const syncType = oneOf(sync.type, ['spec', 'sync', 'type'], ['Event', 'FixedInterval'] as const, 'Event');
  if (syncType === 'Event' && sync.interval !== undefined)
    throw new Invalid(['spec', 'sync', 'interval'], 'only applies to type FixedInterval');
  const intervalMs = duration(sync.interval, ['spec', 'sync', 'interval'], 30_000, 3_600_000);
  if (intervalMs < 100) throw new Invalid(['spec', 'sync', 'interval'], 'must be at least 100ms');
  return {
    name,
    fleetName,
    policy,
    scaleDownStabilizationMs: duration(
      behavior.scaleDownStabilization,
      ['spec', 'behavior', 'scaleDownStabilization'],
      60_000,
      24 * 3_600_000,
    ),
    sync: syncType === 'Event' ? { type: 'Event' } : { type: 'FixedInterval', intervalMs },
  };
}

export interface FleetFileDocuments {
  fleets: FleetSpec[];
  autoscalers: AutoscalerSpec[];
}

/**
 * Parses a fleet file holding SmelterFleet and SmelterFleetAutoscaler documents. Throws FleetSpecError naming
 * the file, line, column and field. An autoscaler must name a fleet of the same file.
 */
export function parseFleetFileDocuments(text: string, file: string): FleetFileDocuments {
  const docs = parseManifest(text, file, { ...FLEET_PARSERS, [AUTOSCALER_KIND]: autoscalerSpecFromObject });
  const fleets = docs.filter((d) => d.kind === FLEET_KIND).map((d) => d.value as FleetSpec);
  const autoscalers = docs.filter((d) => d.kind === AUTOSCALER_KIND).map((d) => d.value as AutoscalerSpec);
  if (fleets.length === 0) throw new FleetSpecError(file, '', `no fleet found (kind ${FLEET_KIND})`);
  const names = new Set(fleets.map((f) => f.name));
  const scaled = new Set<string>();
  for (const a of autoscalers) {
    if (!names.has(a.fleetName))
      throw new FleetSpecError(file, `autoscaler ${a.name}: spec.fleetName`, `no fleet "${a.fleetName}" in this file`);
    if (scaled.has(a.fleetName))
      throw new FleetSpecError(
        file,
        `autoscaler ${a.name}: spec.fleetName`,
        `fleet "${a.fleetName}" already has an autoscaler`,
      );
    scaled.add(a.fleetName);
  }
  return { fleets, autoscalers };
}

/** Parses a file of SmelterFleetAutoscaler documents only (e.g. `simulate --policy`). Throws FleetSpecError. */
export function parseAutoscalerFile(text: string, file: string): AutoscalerSpec[] {
  const autoscalers = parseDocuments(text, file, (doc) => autoscalerSpecFromObject(doc));
  if (autoscalers.length === 0) throw new FleetSpecError(file, '', `no autoscaler found (kind ${AUTOSCALER_KIND})`);
  checkUniqueNames(file, autoscalers, 'autoscaler');
  return autoscalers;
}
