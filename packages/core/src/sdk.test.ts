import { describe, expect, it } from '@jest/globals';
import { backoffMs } from './backoff.js';
import { checkLinkToken, linkToken } from './link-token.js';
import { checkSdkAnnotation, checkSdkLabel, MAX_SDK_ENTRIES, mergeSdkEntries, withSdkEntry } from './sdk.js';
import { FleetError } from './errors.js';

const field = (fn: () => void) => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetError);
    expect((e as FleetError).code).toBe('INVALID_ARGUMENT');
    return (e as FleetError).field;
  }
  return 'accepted';
};

describe('SDK labels and annotations', () => {
  it('accepts what Kubernetes accepts', () => {
    expect(field(() => checkSdkLabel('layout', 'grid-2x2'))).toBe('accepted');
    expect(field(() => checkSdkLabel('a.b_c-d', ''))).toBe('accepted');
    expect(field(() => checkSdkAnnotation('notes', 'any text: at all / ✓'))).toBe('accepted');
  });

  it.each([
    ['', 'x', 'key'],
    ['-start', 'x', 'key'],
    ['has/slash', 'x', 'key'],
    ['k'.repeat(64), 'x', 'key'],
    ['ok', 'has space', 'value'],
    ['ok', 'v'.repeat(64), 'value'],
    ['ok', 'end-', 'value'],
  ])('rejects label %j=%j naming %s', (key, value, bad) => {
    expect(field(() => checkSdkLabel(key, value))).toBe(bad);
  });

  it('rejects an oversized annotation value', () => {
    expect(field(() => checkSdkAnnotation('big', 'x'.repeat(64 * 1024 + 1)))).toBe('value');
  });

  it('caps the number of entries and prefixes them over the fleet labels', () => {
    let entries: Record<string, string> = {};
    for (let i = 0; i < MAX_SDK_ENTRIES; i++) entries = withSdkEntry(entries, `k${i}`, 'v');
    expect(withSdkEntry(entries, 'k0', 'w').k0).toBe('w'); // replacing is fine
    expect(field(() => withSdkEntry(entries, 'one-more', 'v'))).toBe('key');
    expect(mergeSdkEntries({ gpu: 't4', 'sdk.smelterfleet.dev/stale': 'x' }, { layout: 'grid' })).toEqual({
      gpu: 't4',
      'sdk.smelterfleet.dev/layout': 'grid',
    });
  });
});

describe('backoffMs', () => {
  it('grows exponentially to the cap, with bounded jitter', () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 10].map((a) => backoffMs(a, {}, mid))).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
    expect(backoffMs(0, {}, () => 0)).toBe(80);
    expect(backoffMs(0, {}, () => 1)).toBe(120);
  });
});

describe('link tokens', () => {
  it('open the link for their own server only', () => {
    const t = linkToken('secret', 'f-abc');
    expect(checkLinkToken('secret', 'f-abc', t)).toBe(true);
    expect(checkLinkToken('secret', 'f-abd', t)).toBe(false);
    expect(checkLinkToken('other', 'f-abc', t)).toBe(false);
    expect(checkLinkToken('secret', 'f-abc', '')).toBe(false);
  });
});
