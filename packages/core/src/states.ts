/** Lifecycle of one Smelter server. See DESIGN.md "Server states". */
export const SERVER_STATES = ['Starting', 'Ready', 'Allocated', 'Draining', 'Shutdown', 'Unhealthy', 'Error'] as const;
export type ServerState = (typeof SERVER_STATES)[number];

/** Everything that can happen to a server. */
export const SERVER_EVENTS = [
  /** Smelter answered `GET /status`. */
  'Healthy',
  /** A composition was given the server. */
  'Allocate',
  /** The composition's owner gave it back (or it ended). */
  'Release',
  /** Take no new composition; finish what runs (rollout, scale-down, operator). */
  'Drain',
  /** `POST /api/reset` succeeded after the composition ended: back to the warm pool. */
  'Recycle',
  /** Stop the server. */
  'Shutdown',
  /** Health checks failed. */
  'HealthFailed',
  /** The process/pod died or could not start. */
  'Failed',
] as const;
export type ServerEvent = (typeof SERVER_EVENTS)[number];

export type TransitionResult = { ok: true; to: ServerState } | { ok: false; reason: string };

type Row = Partial<Record<ServerEvent, ServerState>>;

// The one transition table. A missing cell is a rejected transition.
const TABLE: Record<ServerState, Row> = {
  Starting: { Healthy: 'Ready', Shutdown: 'Shutdown', HealthFailed: 'Unhealthy', Failed: 'Error' },
  Ready: {
    Healthy: 'Ready',
    Allocate: 'Allocated',
    Drain: 'Draining',
    Shutdown: 'Shutdown',
    HealthFailed: 'Unhealthy',
    Failed: 'Error',
  },
  Allocated: {
    Healthy: 'Allocated',
    Release: 'Draining',
    Drain: 'Draining',
    HealthFailed: 'Unhealthy',
    Failed: 'Error',
  },
  Draining: {
    Healthy: 'Draining',
    Release: 'Draining',
    Drain: 'Draining',
    Recycle: 'Ready',
    Shutdown: 'Shutdown',
    HealthFailed: 'Unhealthy',
    Failed: 'Error',
  },
  Shutdown: { Shutdown: 'Shutdown' },
  Unhealthy: { HealthFailed: 'Unhealthy', Shutdown: 'Shutdown', Failed: 'Error' },
  Error: { Failed: 'Error', Shutdown: 'Shutdown' },
};

const WHY_NOT: Partial<Record<ServerState, Partial<Record<ServerEvent, string>>>> = {
  Allocated: {
    Allocate: 'the server is already dedicated to a composition',
    Shutdown: 'an Allocated server is never stopped directly: drain it, it stops when its composition ends',
  },
  Unhealthy: { Healthy: 'an Unhealthy server is replaced, not revived' },
};

/** Decides what `event` does to a server in `from`. Pure; every other part asks it. */
export function transition(from: ServerState, event: ServerEvent): TransitionResult {
  const to = TABLE[from][event];
  if (to !== undefined) return { ok: true, to };
  return { ok: false, reason: WHY_NOT[from]?.[event] ?? `${event} is not allowed in state ${from}` };
}

/** States in which a server holds (or may still hold) a composition. */
export function holdsComposition(state: ServerState): boolean {
  return state === 'Allocated' || state === 'Draining';
}

/** States a server never leaves except by being stopped and removed. */
export function isTerminal(state: ServerState): boolean {
  return state === 'Shutdown' || state === 'Unhealthy' || state === 'Error';
}
