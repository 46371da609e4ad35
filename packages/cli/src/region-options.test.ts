import { describe, expect, it } from '@jest/globals';
import { FleetError } from '@smelter-fleet/core';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './args.js';
import { describeRegions, regionPreference, regionRouting, type RegionValues } from './region-options.js';

const dir = mkdtempSync(join(tmpdir(), 'region-options-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

function failure(v: RegionValues): Error {
  try {
    regionRouting('up', v);
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('regionRouting', () => {
  it('turns the flags into routing options', () => {
    const latency = file('latency.yaml', 'eu: { us: 80 }\n');
    const options = regionRouting('up', {
      region: 'eu',
      peer: ['us=10.0.0.2:50051', 'ap=alloc.ap.example:50051'],
      'latency-table': latency,
      'forward-timeout': '1500ms',
    });
    expect(options).toEqual({
      region: 'eu',
      peers: { us: '10.0.0.2:50051', ap: 'alloc.ap.example:50051' },
      latencyMs: { eu: { us: 80 } },
      forwardTimeoutMs: 1500,
    });
    expect(describeRegions(options, [{ name: 'live', region: 'us' }])).toBe(
      'region eu; forwards to us (10.0.0.2:50051), ap (alloc.ap.example:50051)\n' +
        'warning: fleet live declares region us, but this allocator serves eu',
    );
    expect(regionRouting('up', {})).toEqual({});
    expect(describeRegions({}, [{ name: 'live', region: 'local' }])).toBe('region local; no peer regions');
  });

  it('usage errors name the flag', () => {
    const cases: [RegionValues, string][] = [
      [{ peer: ['us'] }, 'up: --peer "us": expected region=host:port'],
      [{ peer: ['us=host'] }, 'up: --peer "us=host": expected region=host:port'],
      [{ region: 'eu', peer: ['eu=h:1'] }, `up: --peer "eu=h:1": that is this allocator's own region`],
      [{ peer: ['us=h:1', 'us=h:2'] }, 'up: --peer: region "us" given twice'],
      [{ peer: ['u s=h:1'] }, 'up: --peer "u s": not a region name'],
      [{ region: 'e/u' }, 'up: --region "e/u": not a region name'],
      [{ 'forward-timeout': 'soon' }, 'up: --forward-timeout "soon": expected a duration like 2s'],
      [{ 'peer-cert': 'c.pem' }, 'up: --peer-cert and --peer-key go together'],
    ];
    for (const [v, message] of cases) {
      const err = failure(v);
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message.startsWith(message)).toBe(true);
    }
  });

  it('file errors name the file, and for the latency table the line and field', () => {
    const bad = file('bad-latency.yaml', 'eu:\n  us: -5\n');
    const err = failure({ 'latency-table': bad });
    expect(err).toBeInstanceOf(FleetError);
    expect(err.message).toBe(`up: --latency-table ${bad}:2:7: eu.us: must be milliseconds from 0 to 600000 (got -5)`);
    expect(failure({ 'latency-table': join(dir, 'nope.yaml') }).message).toBe(
      `up: --latency-table ${join(dir, 'nope.yaml')}: ENOENT`,
    );
    expect(failure({ 'peer-token-file': join(dir, 'nope') }).message).toBe(
      `up: --peer-token-file ${join(dir, 'nope')}: ENOENT`,
    );
    expect(failure({ 'peer-token-file': file('empty-token', '# nothing\n') }).message).toMatch(/no token in it$/);
  });

  it('the peer token file is re-read when it changes', () => {
    const tokenFile = file('peer-token', 'peer:first-token\n');
    const { peerMetadata } = regionRouting('up', { 'peer-token-file': tokenFile });
    expect(peerMetadata?.()).toEqual({ authorization: 'Bearer first-token' });
    writeFileSync(tokenFile, 'peer:the-rotated-token\n');
    expect(peerMetadata?.()).toEqual({ authorization: 'Bearer the-rotated-token' });
  });
});

describe('regionPreference', () => {
  it('is absent without the flags, else a list and/or a client region', () => {
    expect(regionPreference({})).toEqual({});
    expect(regionPreference({ 'region-preference': 'eu, us,' })).toEqual({
      preference: { regions: ['eu', 'us'], clientRegion: '' },
    });
    expect(regionPreference({ 'client-region': 'ap' })).toEqual({ preference: { regions: [], clientRegion: 'ap' } });
  });
});
