import { appendFileSync, readFileSync } from 'node:fs';

/**
 * One step of a recorded allocation history (Jepsen style): every call is an `invoke`, then an `ok` or a
 * `fail` with the same `id`. A `fail` is indeterminate: the call may or may not have taken effect.
 */
export interface HistoryEvent {
  /** Operation id, unique in the history; the invoke and its completion share it. */
  id: string;
  type: 'invoke' | 'ok' | 'fail';
  op: 'allocate' | 'release';
  compositionId: string;
  /** Epoch milliseconds (fractional), from one clock for every process of the run. */
  time: number;
  /** ok allocate: the server it got. */
  server?: string;
  /** ok allocate: the composition token it got. */
  token?: string;
  /** fail: why. */
  error?: string;
}

export interface HistoryViolation {
  kind: 'double-allocation' | 'retry-changed' | 'lost-allocation' | 'malformed';
  message: string;
}

export interface HistoryCheckOptions {
  /**
   * Allocations the store holds at the end of the run. When given, every composition that got an ok
   * allocate and whose release was never invoked must be among them, on the same server with the same token.
   */
  finalAllocations?: { compositionId: string; serverName: string; token: string }[];
  /**
   * When `finalAllocations` was listed mid-run: the listing started at `from` and ended at `to` (epoch ms,
   * historyNow). Only compositions surely held all that time (allocated before, release invoked after) are
   * required. Default: listed after the whole history.
   */
  finalAt?: { from: number; to: number };
}

export interface HistoryReport {
  violations: HistoryViolation[];
  invocations: number;
  allocateOk: number;
  releaseOk: number;
  failed: number;
  /** Compositions that were allocated more than once (retries) and always got the same server. */
  retriedCompositions: number;
}

/** Current time on the clock every process of a run shares (epoch ms, sub-millisecond). */
export const historyNow = (): number => performance.timeOrigin + performance.now();

/**
 * Checks an allocation history. Assumes a composition id is never allocated again after a release of it
 * was invoked, and that only releases end allocations (true of the concurrency tests' workload).
 *
 * - Every ok allocate of one composition id names the same server and token (retries are idempotent).
 * - No server is held by two compositions at once. A composition surely holds its server from the first
 *   ok answer of an allocate until the first invoke of a release (whatever that release answered); two
 *   such intervals on one server must not overlap. Using only sure intervals means no false alarm
 *   whatever the timing of indeterminate calls.
 * - With `finalAllocations`: no acknowledged, unreleased allocation is lost.
 */
export function checkHistory(events: readonly HistoryEvent[], options: HistoryCheckOptions = {}): HistoryReport {
  const violations: HistoryViolation[] = [];
  const invokes = new Map<string, HistoryEvent>();
  const done = new Set<string>();
  let allocateOk = 0;
  let releaseOk = 0;
  let failed = 0;

  interface Holding {
    server: string;
    token: string;
    /** First ok answer of an allocate. */
    from: number;
    /** First release invoke, or Infinity. */
    until: number;
    oks: number;
  }
  const holdings = new Map<string, Holding>();
  const releaseInvokes = new Map<string, number>();

  for (const e of events) {
    if (e.type === 'invoke') {
      if (invokes.has(e.id)) violations.push({ kind: 'malformed', message: `operation ${e.id} invoked twice` });
      invokes.set(e.id, e);
      if (e.op === 'release')
        releaseInvokes.set(e.compositionId, Math.min(releaseInvokes.get(e.compositionId) ?? Infinity, e.time));
      continue;
    }
    const invoke = invokes.get(e.id);
    if (!invoke || done.has(e.id) || invoke.op !== e.op || invoke.compositionId !== e.compositionId) {
      violations.push({ kind: 'malformed', message: `${e.type} of ${e.id} does not match one open invoke` });
      continue;
    }
    done.add(e.id);
    if (e.type === 'fail') {
      failed++;
      continue;
    }
    if (e.op === 'release') {
      releaseOk++;
      continue;
    }
    allocateOk++;
    if (!e.server || !e.token) {
      violations.push({ kind: 'malformed', message: `ok allocate ${e.id} names no server or token` });
      continue;
    }
    const h = holdings.get(e.compositionId);
    if (!h) {
      holdings.set(e.compositionId, { server: e.server, token: e.token, from: e.time, until: Infinity, oks: 1 });
      continue;
    }
    h.oks++;
    h.from = Math.min(h.from, e.time);
    if (h.server !== e.server || h.token !== e.token)
      violations.push({
        kind: 'retry-changed',
        message:
          `composition "${e.compositionId}" got ${h.server} and then ${e.server} (${e.id})` +
          (h.server === e.server ? ' with another token' : ''),
      });
  }

  // Sure holding intervals, per server, checked for overlap after sorting by start.
  const byServer = new Map<string, { compositionId: string; from: number; until: number }[]>();
  for (const [compositionId, h] of holdings) {
    const until = releaseInvokes.get(compositionId) ?? Infinity;
    h.until = until;
    if (until <= h.from) continue; // released before it was surely held: no sure interval
    const list = byServer.get(h.server) ?? [];
    list.push({ compositionId, from: h.from, until });
    byServer.set(h.server, list);
  }
  for (const [server, list] of byServer) {
    list.sort((a, b) => a.from - b.from);
    let open = list[0]!;
    for (const next of list.slice(1)) {
      if (next.from < open.until)
        violations.push({
          kind: 'double-allocation',
          message:
            `server ${server} held by "${open.compositionId}" and "${next.compositionId}" at once ` +
            `(from ${next.from.toFixed(1)} to ${Math.min(open.until, next.until).toFixed(1)})`,
        });
      if (next.until > open.until) open = next;
    }
  }

  if (options.finalAllocations) {
    const final = new Map(options.finalAllocations.map((a) => [a.compositionId, a]));
    const window = options.finalAt ?? { from: Infinity, to: Number.MAX_VALUE };
    for (const [compositionId, h] of holdings) {
      if (h.from > window.from || h.until <= window.to) continue;
      const a = final.get(compositionId);
      if (!a || a.serverName !== h.server || a.token !== h.token)
        violations.push({
          kind: 'lost-allocation',
          message: `composition "${compositionId}" was allocated ${h.server} (acknowledged, never released) but the store ${
            a
              ? `has it on ${a.serverName}${a.serverName === h.server ? ' with another token' : ''}`
              : 'has no allocation'
          }`,
        });
    }
  }

  return {
    violations,
    invocations: invokes.size,
    allocateOk,
    releaseOk,
    failed,
    retriedCompositions: [...holdings.values()].filter((h) => h.oks > 1).length,
  };
}

/** Records a history, in memory and optionally as JSON lines appended to a file (for child processes). */
export class HistoryRecorder {
  readonly events: HistoryEvent[] = [];
  private seq = 0;

  constructor(
    private readonly processId: string,
    private readonly file?: string,
    /** Told every event as it is recorded (e.g. to inject a fault after so many failures). */
    private readonly listener?: (e: HistoryEvent) => void,
  ) {}

  /** Records an invoke; call `ok` or `fail` on the result when the call answers. */
  invoke(op: HistoryEvent['op'], compositionId: string) {
    const id = `${this.processId}:${this.seq++}`;
    this.add({ id, type: 'invoke', op, compositionId, time: historyNow() });
    return {
      ok: (result: { server?: string; token?: string } = {}) =>
        this.add({ id, type: 'ok', op, compositionId, time: historyNow(), ...result }),
      fail: (error: unknown) =>
        this.add({ id, type: 'fail', op, compositionId, time: historyNow(), error: String(error) }),
    };
  }

  private add(e: HistoryEvent): void {
    this.events.push(e);
    this.listener?.(e);
    if (this.file) appendFileSync(this.file, JSON.stringify(e) + '\n');
  }
}

/** Reads JSON-lines history files (several processes' recordings) into one history ordered by time. */
export function readHistory(files: readonly string[]): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const f of files)
    for (const line of readFileSync(f, 'utf8').split('\n')) if (line) events.push(JSON.parse(line) as HistoryEvent);
  return events.sort((a, b) => a.time - b.time);
}
