import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { Scheduling } from './selection.js';

export const FLEET_API_VERSION = 'smelterfleet.dev/v1alpha1';
export const FLEET_KIND = 'SmelterFleet';

export interface FleetSpec {
  name: string;
  /** Desired server count (Starting + Ready + Allocated + Draining). */
  replicas: number;
  region: string;
  scheduling: Scheduling;
  template: {
    /** Labels every server carries; allocation selectors match them. */
    labels: Record<string, string>;
    /** Smelter argv. Empty: $SMELTER_PATH, else the Smelter emulator. */
    command: string[];
    env: Record<string, string>;
  };
  drain: {
    /** What a released server becomes: Recycle (`POST /api/reset`, back to Ready) or Replace. */
    onRelease: 'Recycle' | 'Replace';
    /** Time left to a released server to flush outputs before recycle/stop, ms. */
    flushTimeMs: number;
    /** Longest a server may stay Draining before it is stopped anyway, ms. */
    maxDrainTimeMs: number;
  };
  health: {
    /** A server not healthy this long after launch is Unhealthy, ms. */
    startupTimeoutMs: number;
    /** `GET /status` poll period, ms. */
    periodMs: number;
    /** Consecutive failed polls that make a server Unhealthy. */
    failureThreshold: number;
    /** Smelter: Ready once Smelter answers. SdkReady: also wait for code in the image to call SDK Ready. */
    readiness: 'Smelter' | 'SdkReady';
    /** A server whose sidecar is silent this long is Unhealthy, ms. */
    leaseTimeoutMs: number;
    /** When non-zero, SDK Health pings silent this long (after the first) make the server Unhealthy, ms. */
    sdkHealthTimeoutMs: number;
  };
}

/** A bad fleet file: names the file, the line and the path of the field, and why. */
export class FleetSpecError extends Error {
  override readonly name = 'FleetSpecError';
  constructor(
    readonly file: string,
    readonly path: string,
    readonly why: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(`${file}${line ? `:${line}:${column ?? 1}` : ''}: ${path ? `${path}: ` : ''}${why}`);
  }
}

type Path = (string | number)[];
class Invalid extends Error {
  constructor(
    readonly path: Path,
    readonly why: string,
  ) {
    super(why);
  }
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Parses a duration such as `500ms`, `2s`, `5m`, `4h` (or a number of ms) into ms. */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') return undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => JSON.stringify(v) ?? String(v);

function object(v: unknown, path: Path, allowed: readonly string[]): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new Invalid(path, `must be a mapping (got ${show(v)})`);
  for (const key of Object.keys(v))
    if (!allowed.includes(key)) throw new Invalid([...path, key], `unknown field (allowed: ${allowed.join(', ')})`);
  return v;
}

function str(v: unknown, path: Path, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || v === '') throw new Invalid(path, `must be a non-empty string (got ${show(v)})`);
  return v;
}

function int(v: unknown, path: Path, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new Invalid(path, `must be an integer from ${min} to ${max} (got ${show(v)})`);
  return v;
}

function oneOf<T extends string>(v: unknown, path: Path, values: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!values.includes(v as T)) throw new Invalid(path, `must be one of ${values.join(', ')} (got ${show(v)})`);
  return v as T;
}

function duration(v: unknown, path: Path, fallbackMs: number, maxMs = 7 * 24 * 3_600_000): number {
  if (v === undefined) return fallbackMs;
  const ms = parseDurationMs(v);
  if (ms === undefined) throw new Invalid(path, `must be a duration like 500ms, 30s, 5m or 4h (got ${show(v)})`);
  if (ms > maxMs) throw new Invalid(path, `must be at most ${maxMs / 3_600_000}h`);
  return ms;
}

function stringMap(v: unknown, path: Path, keyPattern?: RegExp): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new Invalid(path, `must be a mapping of strings (got ${show(v)})`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (keyPattern && !keyPattern.test(k)) throw new Invalid([...path, k], 'is not a valid key');
    if (typeof val !== 'string')
      throw new Invalid([...path, k], `must be a string (got ${show(val)}); quote numbers and booleans`);
    out[k] = val;
  }
  return out;
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Validates one fleet document (already parsed to plain data) and fills defaults. */
export function fleetSpecFromObject(doc: unknown): FleetSpec {
  const top = object(doc, [], ['apiVersion', 'kind', 'metadata', 'spec']);
  if (top.apiVersion !== FLEET_API_VERSION)
    throw new Invalid(['apiVersion'], `must be ${FLEET_API_VERSION} (got ${show(top.apiVersion)})`);
  if (top.kind !== FLEET_KIND) throw new Invalid(['kind'], `must be ${FLEET_KIND} (got ${show(top.kind)})`);
  const metadata = object(top.metadata, ['metadata'], ['name', 'labels']);
  const name = str(metadata.name, ['metadata', 'name']);
  if (!NAME.test(name))
    throw new Invalid(
      ['metadata', 'name'],
      `"${name}" must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)`,
    );
  const spec = object(top.spec, ['spec'], ['replicas', 'region', 'scheduling', 'template', 'drain', 'health']);
  const template = object(spec.template, ['spec', 'template'], ['metadata', 'spec']);
  const tmeta = object(template.metadata, ['spec', 'template', 'metadata'], ['labels']);
  const tspec = object(template.spec, ['spec', 'template', 'spec'], ['command', 'env']);
  const command = tspec.command ?? [];
  if (!Array.isArray(command) || !command.every((c) => typeof c === 'string' && c !== ''))
    throw new Invalid(['spec', 'template', 'spec', 'command'], 'must be a list of non-empty strings (argv)');
  const drain = object(spec.drain, ['spec', 'drain'], ['onRelease', 'flushTime', 'maxDrainTime']);
  const health = object(
    spec.health,
    ['spec', 'health'],
    ['startupTimeout', 'period', 'failureThreshold', 'readiness', 'leaseTimeout', 'sdkHealthTimeout'],
  );
  const period = duration(health.period, ['spec', 'health', 'period'], 500, 60_000);
  if (period < 50) throw new Invalid(['spec', 'health', 'period'], 'must be at least 50ms');
  const leaseTimeout = duration(health.leaseTimeout, ['spec', 'health', 'leaseTimeout'], 3000, 600_000);
  if (leaseTimeout < 500) throw new Invalid(['spec', 'health', 'leaseTimeout'], 'must be at least 500ms');
  return {
    name,
    replicas: int(spec.replicas, ['spec', 'replicas'], 3, 0, 10_000),
    region: str(spec.region, ['spec', 'region'], 'local'),
    scheduling: oneOf(spec.scheduling, ['spec', 'scheduling'], ['Packed', 'Distributed'] as const, 'Packed'),
    template: {
      labels: stringMap(tmeta.labels, ['spec', 'template', 'metadata', 'labels'], LABEL_KEY),
      command: command as string[],
      env: stringMap(tspec.env, ['spec', 'template', 'spec', 'env'], ENV_KEY),
    },
    drain: {
      onRelease: oneOf(drain.onRelease, ['spec', 'drain', 'onRelease'], ['Recycle', 'Replace'] as const, 'Recycle'),
      flushTimeMs: duration(drain.flushTime, ['spec', 'drain', 'flushTime'], 1000, 3_600_000),
      maxDrainTimeMs: duration(drain.maxDrainTime, ['spec', 'drain', 'maxDrainTime'], 4 * 3_600_000),
    },
    health: {
      startupTimeoutMs: duration(health.startupTimeout, ['spec', 'health', 'startupTimeout'], 60_000),
      periodMs: period,
      failureThreshold: int(health.failureThreshold, ['spec', 'health', 'failureThreshold'], 3, 1, 100),
      readiness: oneOf(health.readiness, ['spec', 'health', 'readiness'], ['Smelter', 'SdkReady'] as const, 'Smelter'),
      leaseTimeoutMs: leaseTimeout,
      sdkHealthTimeoutMs: duration(health.sdkHealthTimeout, ['spec', 'health', 'sdkHealthTimeout'], 0, 3_600_000),
    },
  };
}

function position(doc: Document, lines: LineCounter, path: Path): { line?: number; column?: number } {
  // Point at the deepest node of the path that exists in the document.
  for (let n = path.length; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as {
      range?: [number, number, number];
    } | null;
    const offset = node?.range?.[0];
    if (offset !== undefined) {
      const { line, col } = lines.linePos(offset);
      return { line, column: col };
    }
  }
  return {};
}

/** Parses a fleet file (one or more YAML documents). Throws FleetSpecError. */
export function parseFleetFile(text: string, file: string): FleetSpec[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  if (!Array.isArray(docs)) throw new FleetSpecError(file, '', 'no YAML document found');
  const fleets: FleetSpec[] = [];
  docs.forEach((doc, i) => {
    const err = doc.errors[0];
    if (err) {
      const { line, col } = lines.linePos(err.pos[0]);
      throw new FleetSpecError(file, '', `invalid YAML: ${err.message.split('\n')[0]}`, line, col);
    }
    if (doc.contents === null) return;
    try {
      fleets.push(fleetSpecFromObject(doc.toJS()));
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      const { line, column } = position(doc, lines, e.path);
      const where = e.path.join('.');
      throw new FleetSpecError(file, docs.length > 1 ? `[document ${i + 1}] ${where}` : where, e.why, line, column);
    }
  });
  if (fleets.length === 0) throw new FleetSpecError(file, '', 'no fleet found');
  const seen = new Set<string>();
  for (const f of fleets) {
    if (seen.has(f.name)) throw new FleetSpecError(file, 'metadata.name', `fleet "${f.name}" is declared twice`);
    seen.add(f.name);
  }
  return fleets;
}
