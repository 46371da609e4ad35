import { FleetSpecError, Invalid, isObj, parseDocuments, show } from './spec-parse.js';

/** Round-trip latency between regions in milliseconds: `table[from][to]`. Either direction serves both. */
export type LatencyTable = Readonly<Record<string, Readonly<Record<string, number>>>>;

/** Region names: what a fleet's `region` may be and a region preference may list. */
export const REGION_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

const MAX_LATENCY_MS = 600_000;

/**
 * Parses an operator's latency table (YAML or JSON): a map region -> region -> milliseconds, e.g.
 * `eu-west: { us-east: 80, ap-south: 140 }`. Errors name the file, line and field.
 */
export function parseLatencyTable(text: string, file: string): LatencyTable {
  const docs = parseDocuments(text, file, latencyTableFromObject);
  if (docs.length !== 1) throw new FleetSpecError(file, '', `expected one document, found ${docs.length}`);
  return docs[0]!;
}

export function latencyTableFromObject(doc: unknown): LatencyTable {
  if (!isObj(doc)) throw new Invalid([], `must be a map of region -> region -> milliseconds (got ${show(doc)})`);
  const table: Record<string, Record<string, number>> = {};
  for (const [from, row] of Object.entries(doc)) {
    if (!REGION_NAME.test(from)) throw new Invalid([from], `"${from}" is not a region name (${REGION_NAME.source})`);
    if (!isObj(row)) throw new Invalid([from], `must be a map of region -> milliseconds (got ${show(row)})`);
    const out: Record<string, number> = {};
    for (const [to, ms] of Object.entries(row)) {
      if (!REGION_NAME.test(to)) throw new Invalid([from, to], `"${to}" is not a region name (${REGION_NAME.source})`);
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_LATENCY_MS)
        throw new Invalid([from, to], `must be milliseconds from 0 to ${MAX_LATENCY_MS} (got ${show(ms)})`);
      out[to] = ms;
    }
    table[from] = out;
  }
  return table;
}
