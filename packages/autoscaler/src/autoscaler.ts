import {
  FleetError,
  recommend,
  silentLogger,
  stabilize,
  systemClock,
  type AllocationRequest,
  type AutoscalePolicy,
  type AutoscalerSpec,
  type Clock,
  type FleetStatusView,
  type Logger,
  type StabilizationSample,
  type Store,
  type StoreEvent,
  type WebhookPolicy,
  type WebhookReply,
} from '@smelter-fleet/core';
import { trackExhaustedAllocations } from './demand.js';
import { callWebhook } from './webhook.js';

export interface FleetAutoscalerOptions {
  store: Store;
  autoscalers: readonly AutoscalerSpec[];
  clock?: Clock;
  logger?: Logger;
  /** How long after its last miss an allocation that found no Ready server counts as waiting demand, ms. Default 60000. */
  waitingTtlMs?: number;
  /** Arrival history kept for Predictive policies (at least their window), ms. Default 1 h. */
  historyMs?: number;
  /** Shortest time between two calls of one webhook, ms. Default 1000. */
  webhookMinIntervalMs?: number;
  /** Called after every decision that changed a fleet's replicas. */
  onScale?: (status: AutoscalerStatus) => void;
  /** Default: the global fetch (webhook policies). */
  fetch?: typeof fetch;
}

/** What an operator needs to know of one autoscaler. */
export interface AutoscalerStatus {
  name: string;
  fleetName: string;
  /** Replicas the last decision asked for. */
  desiredReplicas?: number;
  /** Replicas before the last change. */
  previousReplicas?: number;
  /** Epoch ms of the last decision. */
  lastDecisionAt?: number;
  reason?: string;
  /** Epoch ms of the last change of replicas. */
  lastScaleAt?: number;
  /** The last error (webhook failure, missing fleet); cleared by the next clean decision. */
  lastError?: string;
  lastErrorAt?: number;
  decisions: number;
  scales: number;
}

interface ScalerState {
  spec: AutoscalerSpec;
  webhooks: WebhookPolicy[];
  arrivals: number[];
  /** When compositions ended (for Predictive: recycled servers are supply). */
  releases: number[];
  /** Compositions waiting for a server: when they first and last found none. */
  waiting: Map<string, { firstAt: number; lastAt: number }>;
  samples: StabilizationSample[];
  replies: Record<string, WebhookReply>;
  lastCalled: Map<string, number>;
  dirty: boolean;
  nextCheckAt: number | undefined;
  /** Set while its loop sleeps: cuts the sleep short. */
  wakeUp: (() => void) | undefined;
  woken: boolean;
  status: AutoscalerStatus;
}

/** The webhook policies anywhere in a policy tree. */
export function webhooksOf(policy: AutoscalePolicy): WebhookPolicy[] {
  switch (policy.type) {
    case 'Webhook':
      return [policy];
    case 'Schedule':
      return webhooksOf(policy.policy);
    case 'Chain':
      return policy.chain.flatMap(webhooksOf);
    default:
      return [];
  }
}

const earliest = (a: number | undefined, b: number | undefined) =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

/**
 * Runs SmelterFleetAutoscalers: each decides a fleet's replicas from its policy and writes them on the stored
 * FleetSpec (only when they change); the FleetController does the rest. Event-driven: every allocation and
 * server change on the store's change feed triggers a decision at once; a timer runs only when a decision
 * depends on time (schedules, the stabilisation window, the arrival-rate window, waiting demand ageing out).
 * `sync: FixedInterval` instead decides on a fixed period only, as Agones does.
 */
export class FleetAutoscaler {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly waitingTtlMs: number;
  private historyMs: number;
  private readonly webhookMinIntervalMs: number;
  private readonly onScale: ((status: AutoscalerStatus) => void) | undefined;
  private readonly fetch: typeof fetch | undefined;
  private readonly states = new Map<string, ScalerState>();
  private running: AbortSignal | undefined;
  private readonly loops: Promise<void>[] = [];

  constructor(options: FleetAutoscalerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.waitingTtlMs = options.waitingTtlMs ?? 60_000;
    this.webhookMinIntervalMs = options.webhookMinIntervalMs ?? 1000;
    this.onScale = options.onScale;
    this.fetch = options.fetch;
    this.historyMs = options.historyMs ?? 3_600_000;
    for (const spec of options.autoscalers) {
      if (this.states.has(spec.fleetName)) throw new Error(`fleet "${spec.fleetName}" has two autoscalers`);
      this.add(spec);
    }
  }

  /**
   * Adds an autoscaler while running (`smelter-fleet apply`), or gives the fleet's autoscaler a new spec; its
   * history (arrivals, stabilisation samples) is kept, and it decides again at once.
   */
  apply(
    spec: AutoscalerSpec,
    options: { dryRun?: boolean } = {},
  ): { result: 'created' | 'configured' | 'unchanged'; message: string } {
    const state = this.states.get(spec.fleetName);
    if (state && state.spec.name !== spec.name)
      throw new FleetError(
        'FAILED_PRECONDITION',
        `fleet "${spec.fleetName}" already has autoscaler "${state.spec.name}"`,
        { field: 'spec.fleetName' },
      );
    if (state && JSON.stringify(state.spec) === JSON.stringify(spec)) return { result: 'unchanged', message: '' };
    const message = `${spec.policy.type} policy on fleet ${spec.fleetName}`;
    if (options.dryRun) return { result: state ? 'configured' : 'created', message };
    if (!state) {
      this.start(this.add(spec));
      return { result: 'created', message };
    }
    this.historyMs = Math.max(this.historyMs, maxWindow(spec.policy));
    state.spec = spec;
    state.webhooks = webhooksOf(spec.policy);
    state.status.name = spec.name;
    state.nextCheckAt = spec.sync.type === 'FixedInterval' ? this.clock.now() : undefined;
    this.markDirty(state);
    return { result: 'configured', message };
  }

  private add(spec: AutoscalerSpec): ScalerState {
    this.historyMs = Math.max(this.historyMs, maxWindow(spec.policy));
    const state: ScalerState = {
      spec,
      webhooks: webhooksOf(spec.policy),
      arrivals: [],
      releases: [],
      waiting: new Map(),
      samples: [],
      replies: {},
      lastCalled: new Map(),
      dirty: true,
      wakeUp: undefined,
      woken: false,
      nextCheckAt: spec.sync.type === 'FixedInterval' ? this.clock.now() : undefined,
      status: { name: spec.name, fleetName: spec.fleetName, decisions: 0, scales: 0 },
    };
    this.states.set(spec.fleetName, state);
    return state;
  }

  /** Starts the state's loop if `run` is under way (otherwise `run` starts it). */
  private start(state: ScalerState): void {
    const signal = this.running;
    if (signal && !signal.aborted) this.loops.push(this.loop(state, signal));
  }

  /** The store to give the allocator: allocations that find no Ready server count as waiting demand. */
  allocatorStore(): Store {
    return trackExhaustedAllocations(this.store, (request) => this.noteExhausted(request));
  }

  /** Records an allocation request that found no Ready server (see allocatorStore). */
  noteExhausted(request: AllocationRequest): void {
    const state = this.states.get(request.fleet);
    if (!state) return;
    const now = this.clock.now();
    const known = state.waiting.get(request.compositionId);
    // A retry (the allocator waiting for a server) keeps the demand alive; only a new one needs a decision.
    if (known) known.lastAt = now;
    else {
      state.waiting.set(request.compositionId, { firstAt: now, lastAt: now });
      this.markDirty(state);
    }
  }

  /** A snapshot of every autoscaler's status. */
  status(): AutoscalerStatus[] {
    return [...this.states.values()].map((s) => ({ ...s.status }));
  }

  /** Decides until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    // Subscribed before the first decision, so no change in between is missed.
    const events = this.store.watch(signal);
    const watching = (async () => {
      for await (const event of events) this.onEvent(event);
    })();
    this.running = signal;
    try {
      // One loop per autoscaler, so a slow webhook of one fleet delays no other fleet.
      for (const state of this.states.values()) this.start(state);
      await new Promise<void>((resolve) =>
        signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
      );
      await Promise.all(this.loops);
    } finally {
      this.running = undefined;
      await watching;
    }
  }

  private async loop(state: ScalerState, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const now = this.clock.now();
      const due = state.nextCheckAt !== undefined && now >= state.nextCheckAt;
      if (state.spec.sync.type === 'FixedInterval') {
        if (due) {
          state.nextCheckAt = now + state.spec.sync.intervalMs;
          await this.decide(state, signal);
        }
      } else if (state.dirty || due) {
        state.dirty = false;
        state.nextCheckAt = undefined;
        await this.decide(state, signal);
      }
      await this.sleepUntil(state, signal);
    }
  }

  private onEvent(event: StoreEvent): void {
    const fleet =
      event.type === 'server' ? event.server.fleet : event.type === 'fleet' ? event.fleet.name : event.allocation.fleet;
    const state = this.states.get(fleet);
    if (!state) return;
    if (event.type === 'allocation' && !event.released) {
      // An allocation that waited counts from when its demand first showed.
      const id = event.allocation.compositionId;
      const at = state.waiting.get(id)?.firstAt ?? event.allocation.allocatedAt;
      state.waiting.delete(id);
      insertSorted(state.arrivals, at);
    } else if (event.type === 'allocation') insertSorted(state.releases, this.clock.now());
    // Our own write of replicas comes back as a fleet event: deciding again is harmless (same answer).
    this.markDirty(state);
  }

  private markDirty(state: ScalerState): void {
    state.dirty = true;
    state.woken = true;
    state.wakeUp?.();
  }

  private async decide(state: ScalerState, signal: AbortSignal): Promise<void> {
    const { spec, status } = state;
    const log = this.logger.child({ autoscaler: spec.name, fleet: spec.fleetName });
    try {
      const fleet = await this.store.getFleet(spec.fleetName);
      if (!fleet) {
        this.fail(state, `fleet "${spec.fleetName}" not found`, log);
        return;
      }
      const view: FleetStatusView = { replicas: fleet.replicas, starting: 0, ready: 0, allocated: 0, draining: 0 };
      // A waiting composition may be served between our events and this listing: count it once.
      const held = new Set<string>();
      for (const s of await this.store.listServers({ fleet: spec.fleetName })) {
        if (s.compositionId) held.add(s.compositionId);
        if (s.state === 'Starting') view.starting++;
        else if (s.state === 'Ready') view.ready++;
        else if (s.state === 'Allocated') view.allocated++;
        else if (s.state === 'Draining') view.draining++;
      }
      let now = this.clock.now();
      let next: number | undefined;
      for (const hook of state.webhooks) {
        const last = state.lastCalled.get(hook.id);
        if (last !== undefined && now - last < this.webhookMinIntervalMs) {
          next = earliest(next, last + this.webhookMinIntervalMs);
          continue;
        }
        state.lastCalled.set(hook.id, now);
        state.replies[hook.id] = await callWebhook(hook, spec.fleetName, view, {
          signal,
          ...(this.fetch && { fetch: this.fetch }),
        });
        if (signal.aborted) return;
      }
      now = this.clock.now();
      const cutoff = now - this.historyMs;
      for (const list of [state.arrivals, state.releases]) {
        const old = list.findIndex((t) => t > cutoff);
        list.splice(0, old === -1 ? list.length : old);
      }
      let waiting = 0;
      for (const [id, { lastAt }] of state.waiting) {
        if (lastAt <= now - this.waitingTtlMs) state.waiting.delete(id);
        else {
          next = earliest(next, lastAt + this.waitingTtlMs);
          if (!held.has(id)) waiting++;
        }
      }
      const rec = recommend(spec.policy, {
        now,
        fleet: view,
        arrivals: state.arrivals,
        releases: fleet.drain.onRelease === 'Recycle' ? state.releases : [],
        waiting,
        webhooks: state.replies,
      });
      let desired = fleet.replicas;
      let reason = rec.reason;
      if (rec.applies) {
        const stable = stabilize(state.samples, now, spec.scaleDownStabilizationMs, rec.replicas);
        state.samples = stable.samples;
        desired = stable.replicas;
        if (desired > rec.replicas)
          reason += `; held at ${desired} by the ${spec.scaleDownStabilizationMs} ms scale-down window`;
        next = earliest(next, stable.nextCheckAt);
      }
      next = earliest(next, rec.nextCheckAt);
      if (spec.sync.type === 'Event') state.nextCheckAt = earliest(state.nextCheckAt, next);
      status.decisions++;
      status.lastDecisionAt = now;
      status.desiredReplicas = desired;
      status.reason = reason;
      if (rec.error) this.fail(state, rec.error, log);
      else if (status.lastError !== undefined) {
        log.info('autoscaler recovered', { reason });
        delete status.lastError;
        delete status.lastErrorAt;
      }
      if (desired === fleet.replicas) return;
      // Read again just before writing, so a concurrent change of the rest of the spec is not undone.
      const fresh = await this.store.getFleet(spec.fleetName);
      if (!fresh || fresh.replicas === desired) return;
      await this.store.putFleet({ ...fresh, replicas: desired });
      status.previousReplicas = fresh.replicas;
      status.lastScaleAt = now;
      status.scales++;
      log.info('autoscaler scaled fleet', { from: fresh.replicas, to: desired, reason });
      this.onScale?.({ ...status });
    } catch (err) {
      if (signal.aborted) return;
      this.fail(state, `decision failed: ${(err as Error).message}`, log);
      // Try again soon rather than wait for the next event.
      state.nextCheckAt = earliest(state.nextCheckAt, this.clock.now() + 1000);
    }
  }

  private fail(state: ScalerState, error: string, log: Logger): void {
    const { status } = state;
    if (status.lastError !== error) log.warn('autoscaler error; previous decision kept', { error });
    status.lastError = error;
    status.lastErrorAt = this.clock.now();
  }

  private async sleepUntil(state: ScalerState, signal: AbortSignal): Promise<void> {
    if (state.woken || signal.aborted) {
      state.woken = false;
      return;
    }
    const at = state.nextCheckAt;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    state.wakeUp = () => ac.abort();
    try {
      // With nothing time-based pending, only an event wakes us (the long sleep just bounds it).
      await this.clock.sleep(at === undefined ? 3_600_000 : Math.max(0, at - this.clock.now()), ac.signal);
    } catch {
      // woken or aborted
    } finally {
      state.wakeUp = undefined;
      state.woken = false;
      signal.removeEventListener('abort', onAbort);
    }
  }
}

function maxWindow(policy: AutoscalePolicy): number {
  switch (policy.type) {
    case 'Predictive':
      return policy.windowMs;
    case 'Schedule':
      return maxWindow(policy.policy);
    case 'Chain':
      return Math.max(0, ...policy.chain.map(maxWindow));
    default:
      return 0;
  }
}

function insertSorted(list: number[], t: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1]! > t) i--;
  list.splice(i, 0, t);
}
