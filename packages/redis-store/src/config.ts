import { FleetError } from '@smelter-fleet/core';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';

/** Where the store's Redis is and how to reach it, parsed from one URL. */
export type RedisTarget =
  | { kind: 'standalone'; options: RedisOptions }
  | { kind: 'sentinel'; options: RedisOptions }
  | { kind: 'cluster'; nodes: ClusterNode[]; options: ClusterOptions };

export interface ParsedRedisUrl {
  target: RedisTarget;
  /** The installation's key prefix (`?prefix=`), when the URL names one. */
  prefix: string | undefined;
  /** The URL without its password, for logs. */
  redacted: string;
}

/**
 * Accepted forms (the password never appears in errors or logs):
 * - `redis://[user:password@]host[:port][/db][?prefix=name]`
 * - `rediss://...` : the same over TLS
 * - `redis+sentinel://[user:password@]host:port[,host:port...]/masterName[/db][?prefix=name]`
 * - `redis+cluster://[user:password@]host:port[,host:port...][?prefix=name]` (rediss+cluster for TLS)
 */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  const m =
    /^(redis|rediss|redis\+sentinel|rediss\+sentinel|redis\+cluster|rediss\+cluster):\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/.exec(
      url,
    );
  if (!m)
    throw new FleetError(
      'INVALID_ARGUMENT',
      `"${redact(url)}" is not a Redis URL (redis://, rediss://, redis+sentinel://, redis+cluster://)`,
      { field: 'store' },
    );
  const [, scheme, auth, hostsPart, pathPart, query] = m;
  const tls = scheme!.startsWith('rediss') ? {} : undefined;
  let username: string | undefined;
  let password: string | undefined;
  if (auth) {
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon < 0 ? auth : auth.slice(0, colon)) || undefined;
    password = colon < 0 ? undefined : decodeURIComponent(auth.slice(colon + 1));
    // redis://:password@host is a password without a user.
  }
  const hosts = hostsPart!.split(',').map((h) => parseHost(h, url));
  const params = new URLSearchParams(query ?? '');
  for (const key of params.keys())
    if (key !== 'prefix')
      throw new FleetError('INVALID_ARGUMENT', `unknown URL parameter "${key}"`, { field: 'store' });
  const prefix = params.get('prefix') ?? undefined;
  const path = (pathPart ?? '').split('/').filter(Boolean);
  const db = (s: string | undefined) => {
    if (s === undefined) return 0;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0)
      throw new FleetError('INVALID_ARGUMENT', `database "${s}" must be a number`, { field: 'store' });
    return n;
  };
  const common = { username, password, ...(tls ? { tls } : {}) };
  const redacted = password === undefined ? url : url.replace(`:${auth!.slice(auth!.indexOf(':') + 1)}@`, ':***@');
  if (scheme!.endsWith('+sentinel')) {
    const name = path[0];
    if (!name)
      throw new FleetError('INVALID_ARGUMENT', 'a sentinel URL needs the master name as its path', { field: 'store' });
    return {
      target: {
        kind: 'sentinel',
        options: {
          sentinels: hosts,
          name,
          db: db(path[1]),
          ...common,
          sentinelUsername: username,
          sentinelPassword: password,
          ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        },
      },
      prefix,
      redacted,
    };
  }
  if (scheme!.endsWith('+cluster')) {
    if (path.length > 0)
      throw new FleetError('INVALID_ARGUMENT', 'Redis Cluster has no database numbers', { field: 'store' });
    return { target: { kind: 'cluster', nodes: hosts, options: { redisOptions: common } }, prefix, redacted };
  }
  if (hosts.length !== 1)
    throw new FleetError('INVALID_ARGUMENT', 'redis:// takes one host (use redis+sentinel:// or redis+cluster://)', {
      field: 'store',
    });
  if (path.length > 1)
    throw new FleetError('INVALID_ARGUMENT', `bad path "${pathPart}" (only /db)`, { field: 'store' });
  return { target: { kind: 'standalone', options: { ...hosts[0]!, db: db(path[0]), ...common } }, prefix, redacted };
}

function parseHost(h: string, url: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h);
  if (!m) throw new FleetError('INVALID_ARGUMENT', `bad host "${h}" in "${redact(url)}"`, { field: 'store' });
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 6379 };
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
