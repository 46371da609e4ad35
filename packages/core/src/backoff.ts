export interface BackoffOptions {
  /** First delay, ms. Default 100. */
  initialMs?: number;
  /** Longest delay, ms. Default 2000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Fraction of the delay randomised (spreads reconnecting clients). Default 0.2. */
  jitter?: number;
}

/** Delay before retry number `attempt` (0-based): exponential, capped, with jitter. Pure given `random`. */
export function backoffMs(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const { initialMs = 100, maxMs = 2000, factor = 2, jitter = 0.2 } = options;
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, attempt));
  return Math.round(base * (1 - jitter + 2 * jitter * random()));
}
