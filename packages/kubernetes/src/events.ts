import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  FLEET_API_VERSION,
  MemoryEventRecorder,
  newSuffix,
  silentLogger,
  systemClock,
  type Clock,
  type EventRecorder,
  type FleetEvent,
  type Logger,
  type NewFleetEvent,
} from '@smelter-fleet/core';
import { kubeRequest } from './informer.js';

/** What a Kubernetes Event is about (core/v1 ObjectReference). */
export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export interface KubeEventRecorderOptions {
  kubeConfig: KubeConfig;
  /** Namespace the Events (and the objects they are about) live in. */
  namespace: string;
  /**
   * Maps an event's object (`fleet/<name>`, `server/<name>`) to the Kubernetes object it is about. Default:
   * `fleet/x` is the SmelterFleet x, `server/x` the Pod x (server name = pod name), without uid.
   */
  resolve?: (object: string) => InvolvedObject | undefined;
  /** Reporting component (source.component). Default `smelter-fleet-controller`. */
  component?: string;
  /** Reporting instance (source.host). Default: the host name. */
  instance?: string;
  /** Events written per object in a burst before the rate limit applies. Default 25. */
  burst?: number;
  /** Once the burst is spent, one more write per object per this period, ms. Default 10000. */
  refillMs?: number;
  /** A repeat of an event within this window increments the existing Event's count instead of a new one, ms. Default 600000. */
  aggregateWindowMs?: number;
  /** Writes waiting beyond this are dropped (logged). Default 1000. */
  maxQueued?: number;
  /** Also keeps the recent history (list/subscribe). Default: a new MemoryEventRecorder. */
  memory?: EventRecorder;
  logger?: Logger;
  clock?: Clock;
}

interface Written {
  name: string;
  count: number;
  firstTime: number;
  lastTime: number;
}

interface Bucket {
  tokens: number;
  refilledAt: number;
}

/**
 * An EventRecorder that writes each event as a core/v1 Event on the object it is about (SmelterFleet or Pod), as
 * `kubectl describe` shows them, besides keeping the recent history in memory. Writes are asynchronous (recording never
 * waits on the API server), one at a time, rate-limited per object (a token bucket, like client-go's spam filter), and
 * repeats are aggregated into one Event whose count grows.
 */
export class KubeEventRecorder implements EventRecorder {
  private readonly kc: KubeConfig;
  private readonly namespace: string;
  private readonly resolve: (object: string) => InvolvedObject | undefined;
  private readonly component: string;
  private readonly instance: string;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly aggregateWindowMs: number;
  private readonly maxQueued: number;
  private readonly memory: EventRecorder;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly written = new Map<string, Written>();
  private readonly buckets = new Map<string, Bucket>();
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  /** Events dropped by the rate limit or a full queue. */
  dropped = 0;

  constructor(options: KubeEventRecorderOptions) {
    this.kc = options.kubeConfig;
    this.namespace = options.namespace;
    this.resolve = options.resolve ?? ((object) => defaultInvolvedObject(object, options.namespace));
    this.component = options.component ?? 'smelter-fleet-controller';
    this.instance = options.instance ?? hostname();
    this.burst = options.burst ?? 25;
    this.refillMs = options.refillMs ?? 10_000;
    this.aggregateWindowMs = options.aggregateWindowMs ?? 600_000;
    this.maxQueued = options.maxQueued ?? 1000;
    this.clock = options.clock ?? systemClock;
    this.memory = options.memory ?? new MemoryEventRecorder({ clock: this.clock });
    this.logger = options.logger ?? silentLogger;
  }

  record(event: NewFleetEvent): void {
    this.memory.record(event);
    const involved = this.resolve(event.object);
    if (!involved) return;
    if (!this.take(event.object) || this.queued >= this.maxQueued) {
      this.dropped++;
      this.logger.debug('kubernetes event dropped (rate limit)', { reason: event.reason, object: event.object });
      return;
    }
    const now = this.clock.now();
    this.queued++;
    this.queue = this.queue
      .then(() => this.write(event, involved, now))
      .catch((err: unknown) =>
        this.logger.warn('cannot write a kubernetes event', {
          reason: event.reason,
          object: event.object,
          error: String((err as Error)?.message ?? err),
        }),
      )
      .finally(() => this.queued--);
  }

  list(filter?: { fleet?: string; object?: string }): FleetEvent[] {
    return this.memory.list(filter);
  }

  subscribe(listener: (event: FleetEvent) => void): () => void {
    return this.memory.subscribe(listener);
  }

  /** Resolves once every event recorded so far has been written (or failed). */
  async flush(): Promise<void> {
    while (this.queued > 0) await this.queue;
  }

  private take(object: string): boolean {
    const now = this.clock.now();
    const b = this.buckets.get(object) ?? { tokens: this.burst, refilledAt: now };
    const refill = Math.floor((now - b.refilledAt) / this.refillMs);
    if (refill > 0) {
      b.tokens = Math.min(this.burst, b.tokens + refill);
      b.refilledAt += refill * this.refillMs;
    }
    if (b.tokens >= this.burst) b.refilledAt = now;
    this.buckets.set(object, b);
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  private async write(event: NewFleetEvent, involved: InvolvedObject, now: number): Promise<void> {
    const key = JSON.stringify([event.type, event.reason, event.object, event.message]);
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/events`;
    const prev = this.written.get(key);
    if (prev && now - prev.lastTime < this.aggregateWindowMs) {
      prev.count++;
      prev.lastTime = now;
      try {
        await kubeRequest(this.kc, 'PATCH', `${path}/${encodeURIComponent(prev.name)}`, {
          contentType: 'application/merge-patch+json',
          body: { count: prev.count, lastTimestamp: isoSeconds(now) },
          signal: AbortSignal.timeout(10_000),
        });
        return;
      } catch (err) {
        // Gone (events expire, an hour by default): write a new one.
        this.logger.debug('event patch failed; creating anew', { error: String((err as Error)?.message ?? err) });
      }
    }
    const name = `${involved.name}.${now.toString(16)}${newSuffix()}`;
    await kubeRequest(this.kc, 'POST', path, {
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: this.namespace },
        involvedObject: involved,
        type: event.type,
        reason: event.reason,
        message: event.message.slice(0, 1024),
        count: 1,
        firstTimestamp: isoSeconds(now),
        lastTimestamp: isoSeconds(now),
        source: { component: this.component, host: this.instance },
        reportingComponent: this.component,
        reportingInstance: this.instance,
      },
      signal: AbortSignal.timeout(10_000),
    });
    this.written.set(key, { name, count: 1, firstTime: now, lastTime: now });
    if (this.written.size > 5000) this.written.delete(this.written.keys().next().value!);
  }
}

/** `fleet/x` -> SmelterFleet x, `server/x` -> Pod x. */
export function defaultInvolvedObject(object: string, namespace: string): InvolvedObject | undefined {
  const slash = object.indexOf('/');
  const kind = object.slice(0, slash);
  const name = object.slice(slash + 1);
  if (slash < 0 || name === '') return undefined;
  if (kind === 'fleet') return { apiVersion: FLEET_API_VERSION, kind: 'SmelterFleet', name, namespace };
  if (kind === 'autoscaler') return { apiVersion: FLEET_API_VERSION, kind: 'SmelterFleetAutoscaler', name, namespace };
  if (kind === 'server') return { apiVersion: 'v1', kind: 'Pod', name, namespace };
  return undefined;
}

/** Event timestamps (metav1.Time) are whole seconds. */
function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
