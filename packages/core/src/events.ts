import { systemClock, type Clock } from './clock.js';

/** Like Kubernetes Events: what happened to a fleet or a server, for operators (`smelter-fleet events`). */
export interface FleetEvent {
  type: 'Normal' | 'Warning';
  /** CamelCase cause: ScaledUp, ScaledDown, RolloutProgress, RolloutComplete, Draining, DrainTimeout, Replaced... */
  reason: string;
  /** What it is about: `fleet/<name>` or `server/<name>`. */
  object: string;
  /** Fleet it belongs to. */
  fleet: string;
  message: string;
  /** Epoch milliseconds of the first and the last occurrence. */
  firstTime: number;
  lastTime: number;
  /** Occurrences merged into this event (same type, reason, object and message). */
  count: number;
}

export type NewFleetEvent = Pick<FleetEvent, 'type' | 'reason' | 'object' | 'fleet' | 'message'>;

/** Records events; implementations keep a bounded recent history. */
export interface EventRecorder {
  record(event: NewFleetEvent): void;
  /** Oldest first. */
  list(filter?: { fleet?: string; object?: string }): FleetEvent[];
  /** Called on every recorded event (a merged repeat too). Returns an unsubscribe function. */
  subscribe(listener: (event: FleetEvent) => void): () => void;
}

export interface MemoryEventRecorderOptions {
  /** Events kept; the oldest go first. Default 1000. */
  capacity?: number;
  /** Default: the system clock. */
  clock?: Clock;
}

/** The embedded EventRecorder: in this process's memory; repeats merge into one event with a count. */
export class MemoryEventRecorder implements EventRecorder {
  private readonly events = new Map<string, FleetEvent>();
  private readonly listeners = new Set<(event: FleetEvent) => void>();
  private readonly capacity: number;
  private readonly clock: Clock;

  constructor(options: MemoryEventRecorderOptions = {}) {
    this.capacity = options.capacity ?? 1000;
    this.clock = options.clock ?? systemClock;
  }

  record(e: NewFleetEvent): void {
    const key = JSON.stringify([e.type, e.reason, e.object, e.message]);
    const now = this.clock.now();
    const prev = this.events.get(key);
    const event: FleetEvent = prev
      ? { ...prev, lastTime: now, count: prev.count + 1 }
      : { ...e, firstTime: now, lastTime: now, count: 1 };
    // Re-inserted so the map's order is by last occurrence.
    this.events.delete(key);
    this.events.set(key, event);
    if (this.events.size > this.capacity) this.events.delete(this.events.keys().next().value!);
    for (const l of this.listeners) l({ ...event });
  }

  list(filter: { fleet?: string; object?: string } = {}): FleetEvent[] {
    return [...this.events.values()]
      .filter((e) => (!filter.fleet || e.fleet === filter.fleet) && (!filter.object || e.object === filter.object))
      .map((e) => ({ ...e }));
  }

  subscribe(listener: (event: FleetEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
