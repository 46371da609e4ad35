import type { Trace } from './trace.js';

/**
 * The least idle server time (ms of Starting + Ready, inside [0, trace.durationMs)) with which every arrival of
 * the trace finds a Ready server, knowing the whole trace in advance. Each arrival gets either a fresh server
 * launched exactly one cold start before it (cost: the cold start, clipped at time 0), or a server whose
 * previous composition ended (plus the flush time) before it (cost: the gap it waited Ready). Idle cost per
 * gap is min(gap, coldStart), a concave function, so reusing the most recently freed server first (LIFO) is
 * optimal: it keeps gaps as uneven as possible.
 */
export function oracleIdleMs(trace: Trace, coldStartMs: number, flushTimeMs: number): number {
  const frees = trace.arrivals.map((a) => a.atMs + a.durationMs + flushTimeMs).sort((x, y) => x - y);
  const free: number[] = []; // servers Ready again, by the time they became free (ascending)
  let next = 0;
  let idle = 0;
  for (const a of trace.arrivals) {
    while (next < frees.length && frees[next]! <= a.atMs) free.push(frees[next++]!);
    const latest = free[free.length - 1];
    if (latest !== undefined && a.atMs - latest < coldStartMs) {
      idle += a.atMs - latest;
      free.pop();
    } else {
      idle += Math.min(coldStartMs, a.atMs);
      free.length = 0; // every other free server waited even longer: it was stopped instead
    }
  }
  return idle;
}
