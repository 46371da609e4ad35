import { describe, expect, it } from '@jest/globals';
import { FleetError } from '@smelter-fleet/core';
import { parseRedisUrl } from './config.js';

describe('parseRedisUrl', () => {
  it('reads host, port, db, ACL user and password, and a prefix', () => {
    const p = parseRedisUrl('redis://app:p%40ss@cache.local:6380/2?prefix=prod-eu');
    expect(p.target).toEqual({
      kind: 'standalone',
      options: { host: 'cache.local', port: 6380, db: 2, username: 'app', password: 'p@ss' },
    });
    expect(p.prefix).toBe('prod-eu');
    expect(p.redacted).toBe('redis://app:***@cache.local:6380/2?prefix=prod-eu');
  });

  it('takes a password without a user, defaults the port and db, and turns TLS on for rediss', () => {
    const p = parseRedisUrl('rediss://:secret@[::1]');
    expect(p.target).toEqual({
      kind: 'standalone',
      options: { host: '::1', port: 6379, db: 0, username: undefined, password: 'secret', tls: {} },
    });
    expect(p.redacted).not.toContain('secret');
  });

  it('reads Sentinel and Cluster URLs', () => {
    const s = parseRedisUrl('redis+sentinel://s1:26379,s2:26380/mymaster/1');
    expect(s.target.kind).toBe('sentinel');
    expect(s.target.options).toMatchObject({
      name: 'mymaster',
      db: 1,
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
      ],
    });
    const c = parseRedisUrl('rediss+cluster://u:p@n1:7000,n2:7001');
    expect(c.target).toMatchObject({
      kind: 'cluster',
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
      ],
      options: { redisOptions: { username: 'u', password: 'p', tls: {} } },
    });
  });

  it.each([
    ['memory', /not a Redis URL/],
    ['http://x', /not a Redis URL/],
    ['redis://a,b', /one host/],
    ['redis://a/x', /database "x"/],
    ['redis://a?db=1', /unknown URL parameter "db"/],
    ['redis+sentinel://a:1', /master name/],
    ['redis://u:hunter2@a:notaport', /bad host/],
  ])('refuses %s naming the store field', (url, message) => {
    let err: unknown;
    try {
      parseRedisUrl(url);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).code).toBe('INVALID_ARGUMENT');
    expect((err as FleetError).message).toMatch(/^store: /);
    expect((err as FleetError).message).toMatch(message);
    expect((err as FleetError).message).not.toContain('hunter2');
  });
});
