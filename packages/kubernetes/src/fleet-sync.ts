import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import {
  AUTOSCALER_KIND,
  autoscalerSpecFromObject,
  backoffMs,
  FLEET_API_VERSION,
  FLEET_KIND,
  fleetSpecFromObject,
  isFleetError,
  silentLogger,
  systemClock,
  type AutoscalerSpec,
  type Clock,
  type EventRecorder,
  type FleetSpec,
  type Logger,
  type Store,
} from '@smelter-fleet/core';
import { Informer, kubeRequest } from './informer.js';
import {
  availableCondition,
  fleetCounts,
  fleetSelector,
  setCondition,
  updateStatus,
  type Condition,
} from './status.js';

const FLEETS = 'smelterfleets';
/** Held on a SmelterFleet until its servers have drained away after it is deleted. */
export const FLEET_FINALIZER = 'smelterfleet.dev/drain';
const AUTOSCALERS = 'smelterfleetautoscalers';

/** A SmelterFleet or SmelterFleetAutoscaler as the API server returns it (plain JSON). */
export interface CustomResource extends KubernetesObject {
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    /** Typed Date by client-node; a string in the plain JSON informers hold. Only its presence matters here. */
    deletionTimestamp?: Date;
    finalizers?: string[];
  };
  spec?: unknown;
  status?: Record<string, unknown>;
}

/** Where SmelterFleetAutoscaler resources go (the CLI runs them with @smelter-fleet/autoscaler). */
export interface AutoscalerSink {
  /** Adds an autoscaler or gives it a new spec. Throws (a FleetError naming the field) when the spec cannot apply. */
  apply(spec: AutoscalerSpec): void;
  /** The autoscaler `name` is gone. */
  remove(name: string): void;
  /** What the autoscaler `name` last decided, for its resource's status. */
  status?(name: string): { desiredReplicas?: number; lastScaleAt?: number; lastError?: string } | undefined;
}

export interface FleetSyncOptions {
  kubeConfig: KubeConfig;
  /** Namespace whose SmelterFleets (and autoscalers) this controller owns. */
  namespace: string;
  store: Store;
  /** Receives InvalidSpec warnings (`fleet/<name>`, `autoscaler/<name>`). Default: none. */
  events?: EventRecorder;
  /** SmelterFleetAutoscalers go here. Default: they are not watched. */
  autoscalers?: AutoscalerSink;
  /** Status writes are coalesced: after a change, wait this long and write each changed fleet's status once, ms. Default 500. */
  statusIntervalMs?: number;
  /** Remove stored fleets that have no SmelterFleet once the first list is in (the controller drains them). Default true. */
  pruneFleets?: boolean;
  /**
   * Put FLEET_FINALIZER on each SmelterFleet, so that deleting one drains its servers first: the resource (and the
   * pods it owns, which the garbage collector would delete at once, Allocated ones too) stays until its last server
   * is gone. Default true.
   */
  finalizer?: boolean;
  logger?: Logger;
  clock?: Clock;
}

interface Applied {
  uid: string | undefined;
  generation: number | undefined;
  /** Why the spec was refused; undefined when it was applied. */
  invalid?: string;
  /** The fleet/autoscaler as applied (valid specs). */
  fleet?: FleetSpec;
  autoscaler?: AutoscalerSpec;
}

/**
 * Mirrors SmelterFleet custom resources into the store (putFleet/removeFleet; the FleetController does the rest) and
 * SmelterFleetAutoscalers into an AutoscalerSink, and writes the resources' `status` back from the store through the
 * status subresource (optimistic concurrency; coalesced, not once per store event). A spec the parser refuses (one
 * that slipped past the CRD schema) is not applied: a Warning event and an Accepted=False condition name the field.
 * Only spec changes (a new metadata.generation) are applied, so status writes never loop back.
 */
export class FleetSync {
  private readonly kc: KubeConfig;
  private readonly namespace: string;
  private readonly store: Store;
  private readonly events: EventRecorder | undefined;
  private readonly sink: AutoscalerSink | undefined;
  private readonly statusIntervalMs: number;
  private readonly pruneFleets: boolean;
  private readonly finalizer: boolean;
  /** Fleets whose resource is being deleted (finalizer held): removed from the store, draining. */
  private readonly deleting = new Set<string>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly base: string;
  private readonly fleetInformer: Informer<CustomResource>;
  private readonly autoscalerInformer: Informer<CustomResource> | undefined;
  private readonly fleets = new Map<string, Applied>();
  private readonly autoscalers = new Map<string, Applied>();
  /** Work in arrival order, one at a time: a delete never overtakes the put before it. */
  private queue: Promise<void> = Promise.resolve();
  private readonly dirtyFleets = new Set<string>();
  private readonly dirtyAutoscalers = new Set<string>();
  private wakeStatus: (() => void) | undefined;
  private signal: AbortSignal = new AbortController().signal;
  private syncedOnce: Promise<void> | undefined;

  constructor(options: FleetSyncOptions) {
    this.kc = options.kubeConfig;
    this.namespace = options.namespace;
    this.store = options.store;
    this.events = options.events;
    this.sink = options.autoscalers;
    this.statusIntervalMs = options.statusIntervalMs ?? 500;
    this.pruneFleets = options.pruneFleets ?? true;
    this.finalizer = options.finalizer ?? true;
    this.logger = (options.logger ?? silentLogger).child({ component: 'fleet-sync' });
    this.clock = options.clock ?? systemClock;
    this.base = `/apis/${FLEET_API_VERSION}/namespaces/${encodeURIComponent(this.namespace)}`;
    this.fleetInformer = new Informer<CustomResource>({
      kubeConfig: this.kc,
      path: `${this.base}/${FLEETS}`,
      logger: this.logger,
    });
    this.autoscalerInformer = this.sink
      ? new Informer<CustomResource>({ kubeConfig: this.kc, path: `${this.base}/${AUTOSCALERS}`, logger: this.logger })
      : undefined;
  }

  /** The SmelterFleet resource `name` as last seen (for event references: its uid). */
  fleetResource(name: string): CustomResource | undefined {
    return this.fleetInformer.get(name, this.namespace);
  }

  /** Resolves once the first lists are mirrored into the store (fleets pruned, if so configured). */
  synced(): Promise<void> {
    return this.syncedOnce ?? Promise.reject(new Error('fleet sync not running'));
  }

  /**
   * Sets a fleet's replicas through its scale subresource (as HPA does): the spec stays the one source of truth, and
   * the change comes back through the informer like any other. For autoscalers' decisions.
   */
  async scaleFleet(name: string, replicas: number, signal?: AbortSignal): Promise<void> {
    await kubeRequest(this.kc, 'PATCH', `${this.base}/${FLEETS}/${encodeURIComponent(name)}/scale`, {
      contentType: 'application/merge-patch+json',
      body: { spec: { replicas } },
      ...(signal && { signal }),
    });
  }

  /** Marks an autoscaler's status for a write (after it decided). */
  autoscalerChanged(name: string): void {
    this.dirtyAutoscalers.add(name);
    this.wakeStatus?.();
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const offs = [
      this.fleetInformer.on('add', (o) => this.enqueue(() => this.applyFleet(o))),
      this.fleetInformer.on('update', (o) => this.enqueue(() => this.applyFleet(o))),
      this.fleetInformer.on('delete', (o) => this.enqueue(() => this.deleteFleet(o))),
    ];
    if (this.autoscalerInformer)
      offs.push(
        this.autoscalerInformer.on('add', (o) => this.enqueue(() => this.applyAutoscaler(o))),
        this.autoscalerInformer.on('update', (o) => this.enqueue(() => this.applyAutoscaler(o))),
        this.autoscalerInformer.on('delete', (o) => this.enqueue(() => this.deleteAutoscaler(o))),
      );
    // Subscribed before the first list, so no server change in between is missed.
    const watching = (async () => {
      for await (const e of this.store.watch(signal)) {
        if (e.type === 'server') this.fleetChanged(e.server.fleet);
        else if (e.type === 'fleet') this.fleetChanged(e.fleet.name);
      }
    })().catch((err: unknown) => {
      if (!signal.aborted) this.logger.error('store watch ended', { error: String(err) });
    });
    this.syncedOnce = (async () => {
      await Promise.all([this.fleetInformer.start(signal), this.autoscalerInformer?.start(signal)]);
      await this.enqueue(() => this.prune());
    })();
    this.syncedOnce.catch(() => undefined);
    const writing = this.statusLoop(signal);
    await new Promise<void>((resolve) =>
      signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    this.wakeStatus?.();
    for (const off of offs) off();
    await Promise.all([
      this.fleetInformer.stopped(),
      this.autoscalerInformer?.stopped(),
      writing,
      watching,
      this.queue.catch(() => undefined),
    ]);
  }

  private fleetChanged(name: string): void {
    this.dirtyFleets.add(name);
    for (const [autoscaler, a] of this.autoscalers)
      if (a.autoscaler?.fleetName === name) this.dirtyAutoscalers.add(autoscaler);
    this.wakeStatus?.();
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const next = this.queue.then(async () => {
      if (this.signal.aborted) return;
      await work();
    });
    this.queue = next.catch((err: unknown) => this.logger.error('fleet sync failed', { error: String(err) }));
    return this.queue;
  }

  /** Retries a store write with back-off until it succeeds or the sync stops. */
  private async retrying(what: string, op: () => Promise<void>): Promise<void> {
    for (let attempt = 0; !this.signal.aborted; attempt++) {
      try {
        return await op();
      } catch (err) {
        const delayMs = backoffMs(attempt, { initialMs: 200, maxMs: 5000 });
        this.logger.warn(`${what} failed; retrying`, { error: String(err), delayMs });
        await this.clock.sleep(delayMs, this.signal).catch(() => undefined);
      }
    }
  }

  private async applyFleet(obj: CustomResource): Promise<void> {
    const name = obj.metadata.name;
    if (obj.metadata.deletionTimestamp) return this.drainDeleted(obj);
    if (this.finalizer && !obj.metadata.finalizers?.includes(FLEET_FINALIZER)) {
      // A conflict (409) means a newer version is on its way through the informer: it comes back here.
      await this.patchFinalizers(obj, [...(obj.metadata.finalizers ?? []), FLEET_FINALIZER]).catch((err: unknown) =>
        this.logger.warn('cannot add the finalizer', { fleet: name, error: String(err) }),
      );
    }
    const prev = this.fleets.get(name);
    if (prev && prev.uid === obj.metadata.uid && prev.generation === obj.metadata.generation) return;
    const applied: Applied = { uid: obj.metadata.uid, generation: obj.metadata.generation };
    let fleet: FleetSpec;
    try {
      fleet = fleetSpecFromObject({
        apiVersion: FLEET_API_VERSION,
        kind: FLEET_KIND,
        metadata: { name },
        spec: obj.spec,
      });
    } catch (err) {
      applied.invalid = invalidMessage(err);
      this.fleets.set(name, applied);
      this.logger.warn('invalid SmelterFleet: not applied', { fleet: name, error: applied.invalid });
      this.events?.record({
        type: 'Warning',
        reason: 'InvalidSpec',
        object: `fleet/${name}`,
        fleet: name,
        message: `not applied: ${applied.invalid}`,
      });
      this.fleetChanged(name);
      return;
    }
    await this.retrying('putFleet', () => this.store.putFleet(fleet));
    applied.fleet = fleet;
    this.fleets.set(name, applied);
    this.logger.info('fleet applied', { fleet: name, generation: obj.metadata.generation, replicas: fleet.replicas });
    this.fleetChanged(name);
  }

  /** A SmelterFleet being deleted: out of the store (its servers drain), its finalizer released once none is left. */
  private async drainDeleted(obj: CustomResource): Promise<void> {
    const name = obj.metadata.name;
    if (!this.deleting.has(name)) {
      await this.deleteFleet(obj);
      this.deleting.add(name);
    }
    this.fleetChanged(name);
  }

  private async patchFinalizers(obj: CustomResource, finalizers: string[]): Promise<void> {
    await kubeRequest(this.kc, 'PATCH', `${this.base}/${FLEETS}/${encodeURIComponent(obj.metadata.name)}`, {
      contentType: 'application/merge-patch+json',
      // The resourceVersion makes the merge patch conditional: a concurrent change of the list is not overwritten.
      body: { metadata: { finalizers, resourceVersion: obj.metadata.resourceVersion } },
      signal: this.signal,
    });
  }

  /** Releases the finalizer of a deleted fleet once its last server is gone. */
  private async releaseIfDrained(name: string, signal: AbortSignal): Promise<void> {
    const current = this.fleetInformer.get(name, this.namespace);
    if (!current?.metadata.deletionTimestamp) return;
    const left = await this.store.listServers({ fleet: name });
    if (left.length > 0) return;
    const finalizers = current.metadata.finalizers ?? [];
    if (finalizers.includes(FLEET_FINALIZER) && !signal.aborted) {
      await this.patchFinalizers(
        current,
        finalizers.filter((f) => f !== FLEET_FINALIZER),
      );
      this.logger.info('fleet drained; finalizer released', { fleet: name });
    }
  }

  private async deleteFleet(obj: CustomResource): Promise<void> {
    const name = obj.metadata.name;
    this.fleets.delete(name);
    this.deleting.delete(name);
    this.dirtyFleets.delete(name);
    await this.retrying('removeFleet', async () => {
      try {
        await this.store.removeFleet(name);
        this.logger.info('fleet removed (its servers drain)', { fleet: name });
      } catch (err) {
        if (!isFleetError(err, 'NOT_FOUND')) throw err;
      }
    });
  }

  /** Stored fleets with no SmelterFleet (deleted while no controller ran) are removed. */
  private async prune(): Promise<void> {
    if (!this.pruneFleets) return;
    const stored = await this.store.listFleets();
    for (const f of stored)
      if (!this.fleetInformer.get(f.name, this.namespace))
        await this.deleteFleet({ metadata: { name: f.name } } as CustomResource);
  }

  private async applyAutoscaler(obj: CustomResource): Promise<void> {
    const sink = this.sink;
    if (!sink) return;
    const name = obj.metadata.name;
    const prev = this.autoscalers.get(name);
    if (prev && prev.uid === obj.metadata.uid && prev.generation === obj.metadata.generation) return;
    const applied: Applied = { uid: obj.metadata.uid, generation: obj.metadata.generation };
    try {
      const spec = autoscalerSpecFromObject({
        apiVersion: FLEET_API_VERSION,
        kind: AUTOSCALER_KIND,
        metadata: { name },
        spec: obj.spec,
      });
      sink.apply(spec);
      applied.autoscaler = spec;
      this.logger.info('autoscaler applied', { autoscaler: name, fleet: spec.fleetName, policy: spec.policy.type });
    } catch (err) {
      applied.invalid = invalidMessage(err);
      if (prev?.autoscaler) applied.autoscaler = prev.autoscaler; // the last valid spec keeps running
      this.logger.warn('invalid SmelterFleetAutoscaler: not applied', { autoscaler: name, error: applied.invalid });
      this.events?.record({
        type: 'Warning',
        reason: 'InvalidSpec',
        object: `autoscaler/${name}`,
        fleet: specFleetName(obj) ?? '',
        message: `not applied: ${applied.invalid}`,
      });
    }
    this.autoscalers.set(name, applied);
    this.autoscalerChanged(name);
  }

  private async deleteAutoscaler(obj: CustomResource): Promise<void> {
    const name = obj.metadata.name;
    if (this.autoscalers.delete(name)) this.sink?.remove(name);
    this.dirtyAutoscalers.delete(name);
  }

  private async statusLoop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      if (this.dirtyFleets.size === 0 && this.dirtyAutoscalers.size === 0)
        await new Promise<void>((resolve) => (this.wakeStatus = resolve));
      this.wakeStatus = undefined;
      if (signal.aborted) return;
      // Coalesce: everything that changes meanwhile goes into this one write.
      await this.clock.sleep(this.statusIntervalMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      await this.syncedOnce?.catch(() => undefined);
      const fleets = [...this.dirtyFleets];
      const autoscalers = [...this.dirtyAutoscalers];
      this.dirtyFleets.clear();
      this.dirtyAutoscalers.clear();
      let failed = false;
      for (const name of fleets)
        await this.writeFleetStatus(name, signal).catch((err: unknown) => {
          failed = true;
          this.dirtyFleets.add(name);
          if (!signal.aborted) this.logger.warn('cannot write fleet status', { fleet: name, error: String(err) });
        });
      for (const name of autoscalers)
        await this.writeAutoscalerStatus(name, signal).catch((err: unknown) => {
          failed = true;
          this.dirtyAutoscalers.add(name);
          if (!signal.aborted)
            this.logger.warn('cannot write autoscaler status', { autoscaler: name, error: String(err) });
        });
      failures = failed ? failures + 1 : 0;
      if (failed) await this.clock.sleep(backoffMs(failures, { initialMs: 200, maxMs: 5000 }), signal).catch(() => {});
    }
  }

  private async writeFleetStatus(name: string, signal: AbortSignal): Promise<void> {
    if (this.deleting.has(name)) return this.releaseIfDrained(name, signal);
    const current = this.fleetInformer.get(name, this.namespace);
    const applied = this.fleets.get(name);
    if (!current || !applied) return;
    const [servers, stored] = await Promise.all([this.store.listServers({ fleet: name }), this.store.getFleet(name)]);
    const counts = fleetCounts(servers, stored);
    const now = this.clock.now();
    await updateStatus<CustomResource>(
      this.kc,
      `${this.base}/${FLEETS}/${encodeURIComponent(name)}`,
      (obj) => {
        const old = (obj.status ?? {}) as { conditions?: Condition[] };
        let conditions = setCondition(
          old.conditions,
          acceptedCondition(applied.invalid, 'spec applied to the fleet store'),
          now,
        );
        if (applied.generation !== undefined)
          conditions = conditions.map((c) =>
            c.type === 'Accepted' ? { ...c, observedGeneration: applied.generation } : c,
          );
        if (stored) conditions = setCondition(conditions, availableCondition(counts, stored.replicas), now);
        return {
          ...counts,
          ...(applied.generation !== undefined && { observedGeneration: applied.generation }),
          selector: fleetSelector(name),
          conditions,
        };
      },
      { current, signal },
    );
  }

  private async writeAutoscalerStatus(name: string, signal: AbortSignal): Promise<void> {
    const current = this.autoscalerInformer?.get(name, this.namespace);
    const applied = this.autoscalers.get(name);
    if (!current || !applied) return;
    const decided = this.sink?.status?.(name);
    const fleetName = applied.autoscaler?.fleetName;
    const fleet = fleetName ? await this.store.getFleet(fleetName) : undefined;
    const now = this.clock.now();
    await updateStatus<CustomResource>(
      this.kc,
      `${this.base}/${AUTOSCALERS}/${encodeURIComponent(name)}`,
      (obj) => {
        const old = (obj.status ?? {}) as { conditions?: Condition[] };
        let conditions = setCondition(old.conditions, acceptedCondition(applied.invalid, 'autoscaler running'), now);
        if (decided)
          conditions = setCondition(
            conditions,
            decided.lastError
              ? { type: 'ScalingActive', status: 'False', reason: 'DecisionFailed', message: decided.lastError }
              : {
                  type: 'ScalingActive',
                  status: 'True',
                  reason: 'Deciding',
                  message: 'the policy decides the replicas',
                },
            now,
          );
        return {
          ...(fleet && { currentReplicas: fleet.replicas }),
          ...(decided?.desiredReplicas !== undefined && { desiredReplicas: decided.desiredReplicas }),
          ...(decided?.lastScaleAt !== undefined && {
            lastScaleTime: new Date(decided.lastScaleAt).toISOString().replace(/\.\d+Z$/, 'Z'),
          }),
          ...(applied.generation !== undefined && { observedGeneration: applied.generation }),
          conditions,
        };
      },
      { current, signal },
    );
  }
}

/** Whether the resource's spec was taken: the parser's complaint, or what taking it did. */
function acceptedCondition(invalid: string | undefined, applied: string): Omit<Condition, 'lastTransitionTime'> {
  return invalid
    ? { type: 'Accepted', status: 'False', reason: 'InvalidSpec', message: invalid }
    : { type: 'Accepted', status: 'True', reason: 'SpecApplied', message: applied };
}

/** `spec.field: why` from the parsers' errors (core's Invalid carries the path). */
function invalidMessage(err: unknown): string {
  const e = err as { path?: unknown; why?: unknown; message?: unknown };
  if (Array.isArray(e.path) && typeof e.why === 'string') return `${e.path.join('.') || '(document)'}: ${e.why}`;
  return String(e.message ?? err);
}

function specFleetName(obj: CustomResource): string | undefined {
  const spec = obj.spec as { fleetName?: unknown } | undefined;
  return typeof spec?.fleetName === 'string' ? spec.fleetName : undefined;
}
