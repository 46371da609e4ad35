import { describe, expect, it } from '@jest/globals';
import { initialHealth, nextHealth, type HealthState, type Observation } from './health.js';

const run = (obs: Observation[], threshold = 3, from: HealthState = initialHealth) =>
  obs.reduce((s, o) => nextHealth(s, o, threshold), from);
const ok: Observation = { kind: 'answered' };
const fail: Observation = { kind: 'failed', reason: 'timeout after 250 ms' };
const refused: Observation = { kind: 'refused' };

describe('nextHealth', () => {
  it('becomes healthy when Smelter answers', () => {
    expect(run([ok]).health).toBe('healthy');
  });

  it('waits out refusals and failures while starting', () => {
    expect(run([refused, fail, fail, fail, fail]).health).toBe('starting');
    expect(run([refused, fail, ok]).health).toBe('healthy');
  });

  it('turns Unhealthy at once on a refusal after answering (a crash)', () => {
    const s = run([ok, refused]);
    expect(s.health).toBe('unhealthy');
    expect(s.reason).toMatch(/refused/);
  });

  it('needs failureThreshold failures in a row (a hang)', () => {
    expect(run([ok, fail, fail]).health).toBe('healthy');
    expect(run([ok, fail, fail, ok, fail, fail]).health).toBe('healthy');
    const s = run([ok, fail, fail, fail]);
    expect(s.health).toBe('unhealthy');
    expect(s.reason).toMatch(/3 failed health checks.*timeout/);
    expect(run([ok, fail], 1).health).toBe('unhealthy');
  });

  it('turns Unhealthy when the process exits, even while starting', () => {
    expect(run([{ kind: 'fatal', reason: 'exited with code 101' }]).health).toBe('unhealthy');
  });

  it('never revives an Unhealthy server', () => {
    const s = run([ok, refused, ok, ok]);
    expect(s.health).toBe('unhealthy');
  });
});
