import type { Clock } from '@smelter-fleet/core';

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Virtual time for simulations and tests: `sleep` registers a timer; time moves only when `advance` is
 * called, and then jumps to the next timer once every pending promise has settled (everything is idle).
 * Timers due at the same instant fire in the order they were set, so a run is deterministic.
 */
export class SimClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers: Timer[] = [];

  /** `start`: epoch ms of virtual time zero. */
  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer: Timer = {
        at: this.t + Math.max(0, ms),
        seq: this.seq++,
        fire: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.timers.indexOf(timer);
        if (i >= 0) this.timers.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // Sorted by (at, seq): binary search for the insertion point.
      let lo = 0;
      let hi = this.timers.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.timers[mid]!.at <= timer.at) lo = mid + 1;
        else hi = mid;
      }
      this.timers.splice(lo, 0, timer);
    });
  }

  /** Waits until nothing is pending but timers (every promise chain settled). */
  async idle(): Promise<void> {
    // Our components chain only promises (no real I/O), so a few macrotask turns drain them all.
    for (let i = 0; i < 3; i++) await turn();
  }

  /** Epoch ms of the next timer, if any. */
  nextTimerAt(): number | undefined {
    return this.timers[0]?.at;
  }

  /**
   * Lets everything settle, then fires the timers due at the next instant (moving time there) if it is at or
   * before `until`; otherwise moves time to `until`. Returns false when time reached `until`.
   */
  async advance(until = Infinity): Promise<boolean> {
    await this.idle();
    const next = this.timers[0];
    if (!next || next.at > until) {
      if (Number.isFinite(until)) this.t = Math.max(this.t, until);
      return false;
    }
    this.t = Math.max(this.t, next.at);
    while (this.timers[0] && this.timers[0].at <= this.t) this.timers.shift()!.fire();
    return true;
  }

  /** Advances until `until` (epoch ms). */
  async runUntil(until: number): Promise<void> {
    while (await this.advance(until));
    await this.idle();
  }
}
