import { describe, expect, it } from '@jest/globals';
import { MemoryEventRecorder } from './events.js';

function fakeClock(start = 1000) {
  let now = start;
  return { now: () => now, sleep: async () => {}, advance: (ms: number) => (now += ms) };
}

describe('MemoryEventRecorder', () => {
  const e = (reason: string, object = 'fleet/f', message = 'm') =>
    ({ type: 'Normal', reason, object, fleet: 'f', message }) as const;

  it('merges repeats into one event with a count and the last time', () => {
    const clock = fakeClock();
    const r = new MemoryEventRecorder({ clock });
    r.record(e('ScaledUp'));
    clock.advance(500);
    r.record(e('ScaledUp'));
    r.record(e('ScaledUp', 'fleet/f', 'other'));
    expect(r.list()).toEqual([
      { ...e('ScaledUp'), firstTime: 1000, lastTime: 1500, count: 2 },
      { ...e('ScaledUp', 'fleet/f', 'other'), firstTime: 1500, lastTime: 1500, count: 1 },
    ]);
  });

  it('keeps the most recent events within its capacity, and filters', () => {
    const r = new MemoryEventRecorder({ capacity: 2, clock: fakeClock() });
    r.record(e('A'));
    r.record(e('B', 'server/s1'));
    r.record(e('A')); // moves to the end
    r.record({ ...e('C'), fleet: 'g' });
    expect(r.list().map((x) => x.reason)).toEqual(['A', 'C']);
    expect(r.list({ fleet: 'g' }).map((x) => x.reason)).toEqual(['C']);
    expect(r.list({ object: 'server/s1' })).toEqual([]);
  });

  it('tells subscribers until they unsubscribe', () => {
    const r = new MemoryEventRecorder({ clock: fakeClock() });
    const seen: string[] = [];
    const off = r.subscribe((x) => seen.push(`${x.reason}:${x.count}`));
    r.record(e('A'));
    r.record(e('A'));
    off();
    r.record(e('B'));
    expect(seen).toEqual(['A:1', 'A:2']);
  });
});
