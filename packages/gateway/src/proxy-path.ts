import { timingSafeEqual } from 'node:crypto';
import { checkCompositionId, isFleetError } from '@smelter-fleet/core';

/** Every composition's Smelter API lives under `/v1/compositions/{composition_id}/smelter`. */
export const COMPOSITIONS_PREFIX = '/v1/compositions/';
const SMELTER_SEGMENT = '/smelter';

export type ProxyPath =
  /** Not a composition proxy URL: someone else's route (or 404). */
  | { kind: 'none' }
  /** A composition proxy URL that must be refused with 400. */
  | { kind: 'invalid'; field: string; message: string }
  | {
      kind: 'proxy';
      compositionId: string;
      /** Path and query to request from the composition's Smelter (always starts with '/'). */
      upstreamPath: string;
    };

/**
 * Splits a raw request target (`req.url`, still percent-encoded) into the composition id and the path to ask
 * its Smelter for. Refuses anything that could be read as another path after decoding: `.`/`..` segments (also
 * percent-encoded), encoded slashes or backslashes, and raw backslashes. Pure.
 */
export function parseProxyPath(rawUrl: string): ProxyPath {
  const q = rawUrl.indexOf('?');
  const pathname = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q);
  if (!pathname.startsWith(COMPOSITIONS_PREFIX)) return { kind: 'none' };
  const afterPrefix = pathname.slice(COMPOSITIONS_PREFIX.length);
  const slash = afterPrefix.indexOf('/');
  const rawId = slash < 0 ? afterPrefix : afterPrefix.slice(0, slash);
  const afterId = slash < 0 ? '' : afterPrefix.slice(slash);
  if (afterId !== SMELTER_SEGMENT && !afterId.startsWith(SMELTER_SEGMENT + '/')) return { kind: 'none' };

  let compositionId: string;
  try {
    compositionId = decodeURIComponent(rawId);
    checkCompositionId('composition_id', compositionId);
  } catch (err) {
    const message = isFleetError(err) ? err.message : 'composition_id: malformed percent-encoding';
    return { kind: 'invalid', field: 'composition_id', message };
  }

  const rest = afterId.slice(SMELTER_SEGMENT.length) || '/';
  const refused = (why: string): ProxyPath => ({ kind: 'invalid', field: 'path', message: `path: ${why}` });
  if (rest.includes('\\')) return refused('must not contain backslashes');
  if (/%(2f|5c)/i.test(rest)) return refused('must not contain encoded slashes or backslashes');
  for (const segment of rest.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return refused('malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..') return refused('must not contain "." or ".." segments');
  }
  return { kind: 'proxy', compositionId, upstreamPath: rest + query };
}

export type BearerResult = { ok: true; token: string } | { ok: false; reason: 'missing' | 'malformed' };

// RFC 6750 b64token.
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The token of an `Authorization: Bearer <token>` header. Pure. */
export function bearerToken(header: string | undefined): BearerResult {
  if (header === undefined || header === '') return { ok: false, reason: 'missing' };
  const m = BEARER.exec(header);
  return m ? { ok: true, token: m[1]! } : { ok: false, reason: 'malformed' };
}

/** Constant-time comparison of a presented token with the allocation's. */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = Buffer.from(presented, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  // Lengths are not secret (every token has the same length); contents are.
  return a.length === b.length && b.length > 0 && timingSafeEqual(a, b);
}

/** Hop-by-hop headers (RFC 9110 7.6.1) plus those this proxy never forwards. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers to pass on: hop-by-hop ones (and those the `Connection` header names) removed, plus `drop`
 * (lower-case names). Pure.
 */
export function forwardableHeaders(
  headers: Record<string, string | string[] | undefined>,
  drop: readonly string[] = [],
): Record<string, string | string[]> {
  const named = new Set<string>(drop);
  const connection = headers.connection;
  for (const value of Array.isArray(connection) ? connection : connection ? [connection] : [])
    for (const name of value.split(',')) named.add(name.trim().toLowerCase());
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}
