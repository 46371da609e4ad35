import { describe, expect, it } from '@jest/globals';
import { SERVER_EVENTS, SERVER_STATES, transition, type ServerEvent, type ServerState } from './states.js';

// The expected table, written independently of the implementation: row = from, column = event.
// '-' = refused.
const COLUMNS: ServerEvent[] = [
  'Healthy',
  'Allocate',
  'Release',
  'Drain',
  'Recycle',
  'Shutdown',
  'HealthFailed',
  'Failed',
];
const EXPECTED: Record<ServerState, (ServerState | '-')[]> = {
  //          Healthy      Allocate     Release     Drain       Recycle  Shutdown    HealthFailed Failed
  Starting: ['Ready', '-', '-', '-', '-', 'Shutdown', 'Unhealthy', 'Error'],
  Ready: ['Ready', 'Allocated', '-', 'Draining', '-', 'Shutdown', 'Unhealthy', 'Error'],
  Allocated: ['Allocated', '-', 'Draining', 'Draining', '-', '-', 'Unhealthy', 'Error'],
  Draining: ['Draining', '-', 'Draining', 'Draining', 'Ready', 'Shutdown', 'Unhealthy', 'Error'],
  Shutdown: ['-', '-', '-', '-', '-', 'Shutdown', '-', '-'],
  Unhealthy: ['-', '-', '-', '-', '-', 'Shutdown', 'Unhealthy', 'Error'],
  Error: ['-', '-', '-', '-', '-', 'Shutdown', '-', 'Error'],
};

describe('transition table', () => {
  it('covers every event and state', () => {
    expect([...COLUMNS].sort()).toEqual([...SERVER_EVENTS].sort());
    expect(Object.keys(EXPECTED).sort()).toEqual([...SERVER_STATES].sort());
  });

  const cases = SERVER_STATES.flatMap((from) => COLUMNS.map((event, i) => [from, event, EXPECTED[from][i]] as const));
  it.each(cases)('%s + %s -> %s', (from, event, want) => {
    const got = transition(from, event);
    if (want === '-') {
      expect(got.ok).toBe(false);
      if (!got.ok) expect(got.reason).toMatch(/\w/);
    } else {
      expect(got).toEqual({ ok: true, to: want });
    }
  });

  it('explains why an Allocated server cannot be shut down', () => {
    const got = transition('Allocated', 'Shutdown');
    expect(got).toEqual({ ok: false, reason: expect.stringContaining('never stopped directly') });
  });

  it('never lets a composition be lost silently: Allocated leaves only by release, drain or failure', () => {
    const exits = SERVER_EVENTS.map((e) => [e, transition('Allocated', e)] as const).filter(
      ([, r]) => r.ok && r.to !== 'Allocated',
    );
    expect(exits.map(([e]) => e).sort()).toEqual(['Drain', 'Failed', 'HealthFailed', 'Release']);
  });
});
