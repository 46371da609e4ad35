/** What the sidecar thinks of its Smelter. Unhealthy is final: the fleet replaces the server. */
export type SmelterHealth = 'starting' | 'healthy' | 'unhealthy';

export interface HealthState {
  health: SmelterHealth;
  reason: string;
  /** Consecutive failed polls. */
  failures: number;
}

/** One thing the sidecar observed about Smelter. */
export type Observation =
  | { kind: 'answered' }
  /** Nothing listens on the API port: the process is gone (or not up yet). */
  | { kind: 'refused' }
  /** A poll timed out or got a bad answer (a hung or broken Smelter). */
  | { kind: 'failed'; reason: string }
  /** Fatal at once: the supervised process exited, SDK health pings stopped. */
  | { kind: 'fatal'; reason: string };

export const initialHealth: HealthState = { health: 'starting', reason: 'waiting for Smelter to answer', failures: 0 };

/**
 * The health decision, pure. A refused connection after Smelter has answered means it crashed: Unhealthy
 * at once. Other failures must reach `failureThreshold` in a row. While starting, only an exit counts;
 * the fleet's startup timeout covers a server that never comes up.
 */
export function nextHealth(state: HealthState, obs: Observation, failureThreshold: number): HealthState {
  if (state.health === 'unhealthy') return state;
  switch (obs.kind) {
    case 'answered':
      return { health: 'healthy', reason: 'Smelter answers GET /status', failures: 0 };
    case 'fatal':
      return { health: 'unhealthy', reason: obs.reason, failures: state.failures + 1 };
    case 'refused':
      if (state.health === 'starting') return state;
      return {
        health: 'unhealthy',
        reason: 'Smelter refused the connection (process gone?)',
        failures: state.failures + 1,
      };
    case 'failed': {
      const failures = state.failures + 1;
      if (state.health === 'starting') return { ...state, failures };
      if (failures >= failureThreshold)
        return { health: 'unhealthy', reason: `${failures} failed health checks in a row: ${obs.reason}`, failures };
      return { ...state, failures };
    }
  }
}
