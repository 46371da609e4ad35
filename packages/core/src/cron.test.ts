import { describe, expect, it } from '@jest/globals';
import { CronError, cronMatches, lastCronMatch, nextCronMatch, parseCron } from './cron.js';

const at = (iso: string) => Date.parse(iso);

describe('cron (5 fields, UTC)', () => {
  it('matches minutes, hours, ranges, lists and steps', () => {
    const c = parseCron('*/15 8-17 * * 1-5');
    expect(cronMatches(c, at('2026-11-24T08:00:00Z'))).toBe(true); // a Tuesday
    expect(cronMatches(c, at('2026-11-24T08:15:59Z'))).toBe(true);
    expect(cronMatches(c, at('2026-11-24T08:16:00Z'))).toBe(false);
    expect(cronMatches(c, at('2026-11-24T18:00:00Z'))).toBe(false);
    expect(cronMatches(c, at('2026-11-29T08:00:00Z'))).toBe(false); // Sunday
    const l = parseCron('0,30 12 1 1,6 *');
    expect(cronMatches(l, at('2026-06-01T12:30:00Z'))).toBe(true);
    expect(cronMatches(l, at('2026-07-01T12:30:00Z'))).toBe(false);
    expect(cronMatches(parseCron('5/20 * * * *'), at('2026-01-01T00:45:00Z'))).toBe(true);
    expect(cronMatches(parseCron('10-50/20 * * * *'), at('2026-01-01T00:50:00Z'))).toBe(true);
    expect(cronMatches(parseCron('10-50/20 * * * *'), at('2026-01-01T00:40:00Z'))).toBe(false);
  });

  it('treats 7 as Sunday and ORs day-of-month with day-of-week when both are restricted', () => {
    expect(cronMatches(parseCron('0 0 * * 7'), at('2026-11-29T00:00:00Z'))).toBe(true);
    const both = parseCron('0 0 13 * 5'); // the 13th, or any Friday
    expect(cronMatches(both, at('2026-11-13T00:00:00Z'))).toBe(true); // a Friday the 13th
    expect(cronMatches(both, at('2026-11-27T00:00:00Z'))).toBe(true); // a Friday
    expect(cronMatches(both, at('2026-12-13T00:00:00Z'))).toBe(true); // a Sunday the 13th
    expect(cronMatches(both, at('2026-11-26T00:00:00Z'))).toBe(false);
  });

  it('finds the last and next matching minute', () => {
    const c = parseCron('0 8 * * *');
    expect(lastCronMatch(c, at('2026-11-24T09:30:10Z'), 2 * 3_600_000)).toBe(at('2026-11-24T08:00:00Z'));
    expect(lastCronMatch(c, at('2026-11-24T09:30:10Z'), 3_600_000)).toBeUndefined();
    expect(nextCronMatch(c, at('2026-11-24T08:00:00Z'), 2 * 86_400_000)).toBe(at('2026-11-25T08:00:00Z'));
  });

  it('names the bad field', () => {
    expect(() => parseCron('0 25 * * *')).toThrow(new CronError('hour field "25": 25 is out of range 0-23'));
    expect(() => parseCron('* * *')).toThrow(/must have 5 fields/);
    expect(() => parseCron('*/0 * * * *')).toThrow(/minute field.*step "0"/);
    expect(() => parseCron('5-1 * * * *')).toThrow(/backwards/);
    expect(() => parseCron('* * * jan *')).toThrow(/month field "jan": "jan" is not a number/);
  });
});
