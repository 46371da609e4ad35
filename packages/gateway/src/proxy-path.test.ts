import { describe, expect, it } from '@jest/globals';
import { bearerToken, forwardableHeaders, parseProxyPath, tokenMatches } from './proxy-path.js';

describe('parseProxyPath', () => {
  it('splits the composition id and the upstream path, keeping the query', () => {
    expect(parseProxyPath('/v1/compositions/c1/smelter/status')).toEqual({
      kind: 'proxy',
      compositionId: 'c1',
      upstreamPath: '/status',
    });
    expect(parseProxyPath('/v1/compositions/c1/smelter')).toMatchObject({ upstreamPath: '/' });
    expect(parseProxyPath('/v1/compositions/c1/smelter/')).toMatchObject({ upstreamPath: '/' });
    expect(parseProxyPath('/v1/compositions/room%3A1/smelter/api/input/a%20b/register?x=1&y=%2F')).toEqual({
      kind: 'proxy',
      compositionId: 'room:1',
      upstreamPath: '/api/input/a%20b/register?x=1&y=%2F',
    });
  });

  it('leaves other URLs to other routes', () => {
    for (const url of ['/', '/v1/allocations', '/v1/compositions/c1', '/v1/compositions/c1/smelterx', '/openapi.json'])
      expect(parseProxyPath(url)).toEqual({ kind: 'none' });
  });

  it('refuses composition ids the allocator would refuse, naming the field', () => {
    for (const id of ['', '..', '.', '%2e%2e', 'a%2Fb', '%ZZ', '-x', 'a'.repeat(129)])
      expect(parseProxyPath(`/v1/compositions/${id}/smelter/status`)).toMatchObject({
        kind: 'invalid',
        field: 'composition_id',
      });
  });

  it('refuses every path that could escape to another URL after decoding', () => {
    for (const rest of [
      '/../../c2/smelter/status',
      '/..',
      '/./status',
      '/%2e%2e/c2',
      '/%2E./x',
      '/api%2F..%2Fstatus',
      '/api%2fx',
      '/a%5cb',
      '/a\\..\\b',
      '/%E0%A4%A',
    ])
      expect(parseProxyPath(`/v1/compositions/c1/smelter${rest}`)).toMatchObject({ kind: 'invalid', field: 'path' });
  });
});

describe('bearerToken', () => {
  it('reads the token of a Bearer header', () => {
    expect(bearerToken('Bearer abc-DEF_123')).toEqual({ ok: true, token: 'abc-DEF_123' });
    expect(bearerToken('bearer abc=')).toEqual({ ok: true, token: 'abc=' });
  });
  it('tells missing from malformed', () => {
    expect(bearerToken(undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(bearerToken('')).toEqual({ ok: false, reason: 'missing' });
    for (const h of ['Basic dXNlcjpwdw==', 'Bearer', 'Bearer ', 'Bearer a b', 'Bearer a,b', 'Token abc'])
      expect(bearerToken(h)).toEqual({ ok: false, reason: 'malformed' });
  });
});

describe('tokenMatches', () => {
  it('matches only the same token', () => {
    expect(tokenMatches('abc', 'abc')).toBe(true);
    expect(tokenMatches('abd', 'abc')).toBe(false);
    expect(tokenMatches('ab', 'abc')).toBe(false);
    expect(tokenMatches('', '')).toBe(false);
  });
});

describe('forwardableHeaders', () => {
  it('drops hop-by-hop headers, those Connection names, and the ones asked', () => {
    expect(
      forwardableHeaders(
        {
          connection: 'keep-alive, x-secret-hop',
          'keep-alive': 'timeout=5',
          'transfer-encoding': 'chunked',
          'x-secret-hop': '1',
          authorization: 'Bearer t',
          'content-type': 'application/json',
          'set-cookie': ['a=1', 'b=2'],
          upgrade: 'websocket',
        },
        ['authorization'],
      ),
    ).toEqual({ 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] });
  });
});
