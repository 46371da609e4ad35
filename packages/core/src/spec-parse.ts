import { LineCounter, parseAllDocuments, type Document } from 'yaml';

// Validation machinery shared by every document kind of a fleet file (SmelterFleet, SmelterFleetAutoscaler).

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

export type Path = (string | number)[];
export class Invalid extends Error {
  constructor(
    readonly path: Path,
    readonly why: string,
  ) {
    super(why);
  }
}

export const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
export const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
export const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Parses a duration such as `500ms`, `2s`, `5m`, `4h` (or a number of ms) into ms. */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') return undefined;
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const show = (v: unknown) => JSON.stringify(v) ?? String(v);

export function object(v: unknown, path: Path, allowed: readonly string[]): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new Invalid(path, `must be a mapping (got ${show(v)})`);
  for (const key of Object.keys(v))
    if (!allowed.includes(key)) throw new Invalid([...path, key], `unknown field (allowed: ${allowed.join(', ')})`);
  return v;
}

export function str(v: unknown, path: Path, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || v === '') throw new Invalid(path, `must be a non-empty string (got ${show(v)})`);
  return v;
}

export function int(v: unknown, path: Path, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new Invalid(path, `must be an integer from ${min} to ${max} (got ${show(v)})`);
  return v;
}

export function oneOf<T extends string>(v: unknown, path: Path, values: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!values.includes(v as T)) throw new Invalid(path, `must be one of ${values.join(', ')} (got ${show(v)})`);
  return v as T;
}

export function duration(v: unknown, path: Path, fallbackMs: number, maxMs = 7 * 24 * 3_600_000): number {
  if (v === undefined) return fallbackMs;
  const ms = parseDurationMs(v);
  if (ms === undefined) throw new Invalid(path, `must be a duration like 500ms, 30s, 5m or 4h (got ${show(v)})`);
  if (ms > maxMs) throw new Invalid(path, `must be at most ${maxMs / 3_600_000}h`);
  return ms;
}

export function stringMap(v: unknown, path: Path, keyPattern?: RegExp): Record<string, string> {
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

export function position(doc: Document, lines: LineCounter, path: Path): { line?: number; column?: number } {
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

/**
 * Parses every YAML document of a file with `perDoc` (which throws Invalid with a field path). Errors become
 * FleetSpecError naming the file, the line and column, and the field path.
 */
export function parseDocuments<T>(text: string, file: string, perDoc: (doc: unknown) => T): T[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  if (!Array.isArray(docs)) throw new FleetSpecError(file, '', 'no YAML document found');
  const out: T[] = [];
  docs.forEach((doc, i) => {
    const err = doc.errors[0];
    if (err) {
      const { line, col } = lines.linePos(err.pos[0]);
      throw new FleetSpecError(file, '', `invalid YAML: ${err.message.split('\n')[0]}`, line, col);
    }
    if (doc.contents === null) return;
    try {
      out.push(perDoc(doc.toJS()));
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      const { line, column } = position(doc, lines, e.path);
      const where = e.path.join('.');
      throw new FleetSpecError(file, docs.length > 1 ? `[document ${i + 1}] ${where}` : where, e.why, line, column);
    }
  });
  return out;
}

export function checkUniqueNames(file: string, items: { name: string }[], what: string): void {
  const seen = new Set<string>();
  for (const item of items) {
    if (seen.has(item.name))
      throw new FleetSpecError(file, 'metadata.name', `${what} "${item.name}" is declared twice`);
    seen.add(item.name);
  }
}

/** The API version every document kind of a fleet file carries. */
export const FLEET_API_VERSION = 'smelterfleet.dev/v1alpha1';

/**
 * Checks what every document of a fleet file shares (apiVersion, kind, metadata.name as a DNS label) and
 * returns its name and its `spec`, restricted to `specKeys`.
 */
export function documentHeader(doc: unknown, kind: string, specKeys: readonly string[]): { name: string; spec: Obj } {
  const top = object(doc, [], ['apiVersion', 'kind', 'metadata', 'spec']);
  if (top.apiVersion !== FLEET_API_VERSION)
    throw new Invalid(['apiVersion'], `must be ${FLEET_API_VERSION} (got ${show(top.apiVersion)})`);
  if (top.kind !== kind) throw new Invalid(['kind'], `must be ${kind} (got ${show(top.kind)})`);
  const metadata = object(top.metadata, ['metadata'], ['name', 'labels']);
  const name = str(metadata.name, ['metadata', 'name']);
  if (!NAME.test(name))
    throw new Invalid(
      ['metadata', 'name'],
      `"${name}" must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)`,
    );
  return { name, spec: object(top.spec, ['spec'], specKeys) };
}
