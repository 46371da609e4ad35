import {
  DRAIN_REQUESTED_ANNOTATION,
  isCurrent,
  isFleetError,
  isTerminal,
  MemoryEventRecorder,
  newSuffix,
  silentLogger,
  systemClock,
  TEMPLATE_HASH_LABEL,
  templateHash,
  type Clock,
  type EventRecorder,
  type FleetSpec,
  type LaunchedServer,
  type Logger,
  type NewFleetEvent,
  type Runtime,
  type ServerExit,
  type ServerRecord,
  type ServerUpdate,
  type Store,
} from '@smelter-fleet/core';
import type { ControllerMetrics } from './metrics.js';
import { planFleet, type FleetPlan, type StopWhy } from './plan.js';

export interface FleetControllerOptions {
  store: Store;
  runtime: Runtime;
  clock?: Clock;
  logger?: Logger;
  /** Longest pause between two passes when nothing happens, ms. Default 250. */
  resyncIntervalMs?: number;
  /** Grace between SIGINT and SIGKILL when stopping a server, ms. Default 5000. */
  stopGraceMs?: number;
  /** Pause before a server whose launch failed is given up (and replaced), so a bad command does not spin, ms. Default 1000. */
  launchRetryDelayMs?: number;
  /** Where scale, rollout, drain and failure events go. Default: an in-memory recorder (`events`). */
  events?: EventRecorder;
  /** Prometheus metrics. Default: none. */
  metrics?: ControllerMetrics;
  /**
   * When `run`'s signal aborts: true stops every server and clears the store (the orderly end of a local `up`);
   * false leaves servers and records as they are, as a crashed controller would, for the next one to adopt.
   * Default true.
   */
  stopServersOnExit?: boolean;
}

/** Where a fleet's rollout stands, as of the controller's last pass. */
export interface FleetRolloutStatus {
  templateHash: string;
  updated: number;
  outdated: number;
  complete: boolean;
}

/**
 * Keeps each fleet at its replica count on one runtime: launches servers, replaces failed ones, rolls out
 * new templates (see planFleet), stops drained ones, retires surplus Ready ones, and never stops an Allocated
 * one. Health, readiness and recycling are the sidecars' (reported over the fleet link); the controller enforces
 * the startup timeout and the max drain time. Level-triggered and restart-safe: every pass recomputes from the
 * store and the runtime; a server is recorded before its process is launched, and a new controller adopts what
 * an earlier one left (records without a process get one, processes without a record are stopped).
 */
export class FleetController {
  readonly events: EventRecorder;
  private readonly store: Store;
  private readonly runtime: Runtime;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly metrics: ControllerMetrics | undefined;
  private readonly resyncIntervalMs: number;
  private readonly stopGraceMs: number;
  private readonly launchRetryDelayMs: number;
  private readonly stopServersOnExit: boolean;
  /** Servers with an operation under way (launch, stop); a pass leaves them alone. */
  private readonly busy = new Map<string, Promise<void>>();
  private readonly exitedEarly = new Set<string>();
  private readonly rollouts = new Map<string, FleetRolloutStatus>();
  private signal: AbortSignal = new AbortController().signal;
  private wakeUp: (() => void) | undefined;
  private woken = false;

  constructor(options: FleetControllerOptions) {
    this.store = options.store;
    this.runtime = options.runtime;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.events = options.events ?? new MemoryEventRecorder({ clock: this.clock });
    this.metrics = options.metrics;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 250;
    this.stopGraceMs = options.stopGraceMs ?? 5000;
    this.launchRetryDelayMs = options.launchRetryDelayMs ?? 1000;
    this.stopServersOnExit = options.stopServersOnExit ?? true;
  }

  /** Reconciles until `signal` aborts; then, unless `stopServersOnExit` is false, stops every server. */
  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const offExit = this.runtime.onExit((exit) => void this.onExit(exit));
    const watching = (async () => {
      for await (const _ of this.store.watch(signal)) this.wake();
    })();
    try {
      while (!signal.aborted) {
        try {
          await this.reconcile();
        } catch (err) {
          if (!signal.aborted) this.logger.error('reconcile failed', { error: String(err) });
        }
        await this.sleepUntilWoken(signal);
      }
    } finally {
      await watching;
      offExit();
      if (this.stopServersOnExit) await this.shutdownAll();
      else await this.settled();
    }
  }

  /** Resolves when no operation is under way (for tests and orderly shutdown). */
  async settled(): Promise<void> {
    while (this.busy.size > 0) await Promise.allSettled(this.busy.values());
  }

  /** Rollout progress of each fleet as of the last pass. */
  rolloutStatus(fleet: string): FleetRolloutStatus | undefined {
    const s = this.rollouts.get(fleet);
    return s && { ...s };
  }

  /** One pass over every fleet. */
  async reconcile(): Promise<void> {
    const started = performance.now();
    const [fleets, servers] = await Promise.all([this.store.listFleets(), this.store.listServers()]);
    // Listed after the store: a process launched in between belongs to a record already (recorded first).
    const processes = new Map(this.runtime.list().map((p) => [p.name, p]));
    await this.adopt(servers, processes);
    const byName = new Map(fleets.map((f) => [f.name, f]));
    const byFleet = new Map<string, ServerRecord[]>();
    for (const s of servers) {
      const list = byFleet.get(s.fleet);
      if (list) list.push(s);
      else byFleet.set(s.fleet, [s]);
    }
    for (const name of new Set([...byName.keys(), ...byFleet.keys()])) {
      if (this.signal.aborted) return;
      await this.reconcileFleet(byName.get(name), name, byFleet.get(name) ?? []);
    }
    this.metrics?.reconcileSeconds.observe((performance.now() - started) / 1000);
  }

  /** What an earlier controller left: records whose process is missing, processes whose record is missing. */
  private async adopt(servers: ServerRecord[], processes: Map<string, LaunchedServer>): Promise<void> {
    const recorded = new Set<string>();
    for (const s of servers) {
      recorded.add(s.name);
      if (this.busy.has(s.name) || isTerminal(s.state)) continue;
      const p = processes.get(s.name);
      if (p && s.address === '') {
        // Launched by a controller that died before recording where: record it now.
        await this.recordLaunch(s.name, p);
      } else if (!p && s.address === '' && s.state === 'Starting') {
        const fleet = await this.store.getFleet(s.fleet);
        if (fleet) this.startProcess(fleet, s.name, 'recorded before a restart, never launched');
      } else if (!p) {
        // Racing onExit is harmless: after its update this one (at the listed version) is refused; before it,
        // onExit's update (Error -> Error) still writes the exit's reason.
        await this.update(s, { event: 'Failed', reason: 'process not found (it ended while no controller watched)' });
      }
    }
    for (const name of processes.keys())
      if (!recorded.has(name) && !this.busy.has(name)) {
        this.logger.warn('stopping a server process with no record', { server: name });
        this.track(name, () => this.runtime.stop(name, { graceMs: this.stopGraceMs }));
      }
  }

  private async reconcileFleet(fleet: FleetSpec | undefined, name: string, servers: ServerRecord[]): Promise<void> {
    const now = this.clock.now();
    const hash = fleet ? templateHash(fleet.template) : '';
    const live: ServerRecord[] = [];
    for (const s of servers) {
      if (this.busy.has(s.name)) {
        if (!isTerminal(s.state)) live.push(s);
        continue;
      }
      const next = fleet && !isTerminal(s.state) ? await this.tend(fleet, s, now) : s;
      if (!next) continue; // changed under us: the next pass sees it
      if (!isTerminal(next.state)) live.push(next);
      else this.retire(next, next.state === 'Shutdown' ? 'stopping' : `replacing ${next.state} server`);
    }

    const plan = planFleet({
      replicas: fleet?.replicas ?? 0,
      scheduling: fleet?.scheduling ?? 'Packed',
      ...(fleet?.strategy && { strategy: fleet.strategy }),
      servers: live.map((s) => ({
        name: s.name,
        state: s.state,
        node: s.node,
        createdAt: s.createdAt,
        current: !fleet || isCurrent(s, fleet, hash),
        hasComposition: s.compositionId !== undefined,
        busy: this.busy.has(s.name),
      })),
    });
    this.observe(fleet, name, hash, servers, plan);
    const byName = new Map(live.map((s) => [s.name, s]));

    // Each change is one store write of its own; issued together, not one round trip after another.
    await Promise.all(
      plan.drain.map(async (serverName) => {
        const s = byName.get(serverName)!;
        const drained = await this.update(s, {
          event: 'Drain',
          reason: 'outdated template: leaves when its composition ends',
          annotations: { ...s.annotations, [DRAIN_REQUESTED_ANNOTATION]: 'outdated template' },
        });
        if (drained) this.event('Normal', 'Draining', name, `server/${s.name}`, drainMessage(s, fleet));
      }),
    );
    const stopped: Record<StopWhy, number> = { surplus: 0, outdated: 0, drained: 0 };
    await Promise.all(
      plan.stop.map(async ({ name: serverName, why }) => {
        const s = byName.get(serverName)!;
        const reason = why === 'surplus' ? 'scaled down' : why === 'outdated' ? 'outdated template' : 'drained';
        const next = await this.update(s, { event: 'Shutdown', reason });
        if (!next) return;
        stopped[why]++;
        this.metrics?.stopped.inc({ fleet: name, why });
        this.retire(next, reason);
      }),
    );
    if (fleet && plan.launch > 0) await this.launch(fleet, hash, plan.launch);

    const desired = fleet?.replicas ?? 0;
    if (plan.launch > 0 && plan.status.outdated === 0)
      this.event(
        'Normal',
        'ScaledUp',
        name,
        `fleet/${name}`,
        `launching ${plan.launch} server(s) (replicas ${desired})`,
      );
    if (stopped.surplus > 0)
      this.event(
        'Normal',
        'ScaledDown',
        name,
        `fleet/${name}`,
        `stopping ${stopped.surplus} surplus server(s) (replicas ${desired})`,
      );
    if (stopped.drained > 0)
      this.event(
        'Normal',
        'Drained',
        name,
        `fleet/${name}`,
        `stopping ${stopped.drained} drained server(s) that held no composition`,
      );
    const rolloutActs = plan.status.outdated > 0 && (plan.launch > 0 || stopped.outdated > 0 || plan.drain.length > 0);
    if (rolloutActs)
      this.event(
        'Normal',
        'RolloutProgress',
        name,
        `fleet/${name}`,
        `template ${hash}: ${plan.status.updated} updated, ${plan.status.outdated} outdated; ` +
          `launching ${plan.launch}, retiring ${stopped.outdated} Ready, draining ${plan.drain.length} Allocated`,
      );
  }

  /** Metrics and the rollout status of one fleet; RolloutComplete when the last outdated server is gone. */
  private observe(
    fleet: FleetSpec | undefined,
    name: string,
    hash: string,
    servers: ServerRecord[],
    plan: FleetPlan,
  ): void {
    if (this.metrics) {
      // Every record as listed at the start of the pass, terminal ones too (Unhealthy, Error, Shutdown).
      const byState: Record<string, number> = {};
      for (const s of servers) byState[s.state] = (byState[s.state] ?? 0) + 1;
      this.metrics.setFleet(name, byState, plan.status.outdated, fleet?.replicas ?? 0);
    }
    if (!fleet) {
      this.rollouts.delete(name);
      return;
    }
    const prev = this.rollouts.get(name);
    const now: FleetRolloutStatus = {
      templateHash: hash,
      updated: plan.status.updated,
      outdated: plan.status.outdated,
      complete: plan.status.rolloutComplete,
    };
    this.rollouts.set(name, now);
    if (now.complete && prev && !prev.complete)
      this.event('Normal', 'RolloutComplete', name, `fleet/${name}`, `every server runs template ${hash}`);
  }

  /** Startup timeout and max drain time of one server; returns its record after any change. */
  private async tend(fleet: FleetSpec, s: ServerRecord, now: number): Promise<ServerRecord | undefined> {
    const { startupTimeoutMs } = fleet.health;
    if (s.state === 'Starting' && s.address !== '' && now - s.createdAt > startupTimeoutMs) {
      const reason = `not Ready within ${startupTimeoutMs} ms of launch`;
      this.event('Warning', 'StartupTimeout', fleet.name, `server/${s.name}`, reason);
      return this.update(s, { event: 'HealthFailed', reason });
    }
    const { maxDrainTimeMs } = fleet.drain;
    if (s.state === 'Draining' && now - s.stateChangedAt >= maxDrainTimeMs) {
      this.logger.warn('max drain time exceeded; stopping server', {
        server: s.name,
        composition: s.compositionId,
        maxDrainTimeMs,
      });
      const next = await this.update(s, { event: 'Shutdown', reason: `max drain time ${maxDrainTimeMs} ms exceeded` });
      if (next) {
        this.metrics?.drainTimeouts.inc({ fleet: fleet.name });
        this.metrics?.stopped.inc({ fleet: fleet.name, why: 'drain-timeout' });
        this.event(
          'Warning',
          'DrainTimeout',
          fleet.name,
          `server/${s.name}`,
          `still Draining after the max drain time (${formatMs(maxDrainTimeMs)}); stopped` +
            (s.compositionId ? ` with composition ${s.compositionId}` : ''),
        );
      }
      return next;
    }
    return s;
  }

  /** Records `count` servers (all of them before any process starts), then launches each. */
  private async launch(fleet: FleetSpec, hash: string, count: number): Promise<void> {
    const names = Array.from({ length: count }, () => `${fleet.name}-${newSuffix()}`);
    const recorded = await Promise.all(
      names.map(async (name) => {
        try {
          await this.store.addServer({
            name,
            fleet: fleet.name,
            region: fleet.region,
            address: '',
            ports: { api: 0, whip_whep: 0, rtmp: 0 },
            labels: { ...fleet.template.labels, [TEMPLATE_HASH_LABEL]: hash },
            node: '',
          });
          return name;
        } catch (err) {
          this.logger.error('cannot record a new server', { server: name, error: String(err) });
          return undefined;
        }
      }),
    );
    for (const name of recorded) if (name) this.startProcess(fleet, name, 'launch');
  }

  private startProcess(fleet: FleetSpec, name: string, why: string): void {
    this.track(name, async () => {
      if (this.signal.aborted) return;
      let launched: LaunchedServer;
      try {
        launched = await this.runtime.start(
          { name, fleet: fleet.name, command: fleet.template.command, env: fleet.template.env },
          this.signal,
        );
      } catch (err) {
        const already = isFleetError(err, 'ALREADY_EXISTS') && this.runtime.list().find((p) => p.name === name);
        if (already) {
          launched = already;
        } else {
          if (this.signal.aborted) return;
          this.logger.error('launch failed', { server: name, fleet: fleet.name, error: String(err) });
          this.event('Warning', 'LaunchFailed', fleet.name, `server/${name}`, String((err as Error).message ?? err));
          await this.runtime.stop(name, { graceMs: 0 });
          // Let the next pass try again without spinning on a command that cannot start.
          await this.clock.sleep(this.launchRetryDelayMs, this.signal).catch(() => undefined);
          await this.store
            .updateServer(name, { event: 'Failed', reason: `launch failed: ${(err as Error).message ?? err}` })
            .catch(() => undefined);
          return;
        }
      }
      this.metrics?.launched.inc({ fleet: fleet.name });
      await this.recordLaunch(name, launched);
      this.logger.info('server launched', { server: name, fleet: fleet.name, pid: launched.pid, why });
    });
  }

  private async recordLaunch(name: string, p: LaunchedServer): Promise<void> {
    try {
      await this.store.updateServer(name, {
        address: p.address,
        ports: p.ports,
        node: p.node,
        ...(p.apiHost !== undefined && { apiHost: p.apiHost }),
        ...(p.pid !== undefined && { pid: p.pid }),
      });
      if (this.exitedEarly.delete(name))
        await this.store.updateServer(name, { event: 'Failed', reason: 'exited during launch' });
    } catch (err) {
      // Removed meanwhile: its process has no record now, and the next pass stops it.
      if (!isFleetError(err, 'NOT_FOUND') && !isFleetError(err, 'FAILED_PRECONDITION')) throw err;
    }
  }

  private retire(s: ServerRecord, why: string): void {
    this.logger.info('stopping server', { server: s.name, why });
    if (s.state === 'Unhealthy' || s.state === 'Error')
      this.event('Warning', 'Replaced', s.fleet, `server/${s.name}`, `${s.state}: ${s.reason ?? 'no reason given'}`);
    this.track(s.name, () => this.stopAndRemove(s));
  }

  private async stopAndRemove(s: ServerRecord): Promise<void> {
    await this.runtime.stop(s.name, { graceMs: this.stopGraceMs });
    if (this.signal.aborted && !this.stopServersOnExit) return; // a killed controller leaves the record
    try {
      await this.store.removeServer(s.name);
    } catch (err) {
      if (!isFleetError(err, 'NOT_FOUND')) throw err;
    }
  }

  private async onExit(exit: ServerExit): Promise<void> {
    if (exit.expected) return;
    const how = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const last = exit.lastOutput.at(-1);
    this.logger.warn('server process ended unexpectedly', { server: exit.name, how, lastOutput: last });
    try {
      await this.store.updateServer(exit.name, {
        event: 'Failed',
        reason: last ? `${how}: ${last.slice(0, 200)}` : how,
      });
    } catch (err) {
      if (isFleetError(err, 'NOT_FOUND')) this.exitedEarly.add(exit.name);
      else if (!isFleetError(err, 'FAILED_PRECONDITION'))
        this.logger.error('cannot record exit', { server: exit.name, error: String(err) });
    }
    this.wake();
  }

  /** Applies an update; a concurrent change (refused transition, server gone) just skips it till the next pass. */
  private async update(s: ServerRecord, update: ServerUpdate): Promise<ServerRecord | undefined> {
    try {
      return await this.store.updateServer(s.name, { ...update, expectedVersion: s.version });
    } catch (err) {
      if (isFleetError(err, 'ABORTED') || isFleetError(err, 'FAILED_PRECONDITION') || isFleetError(err, 'NOT_FOUND')) {
        this.wake();
        return undefined;
      }
      throw err;
    }
  }

  private event(type: NewFleetEvent['type'], reason: string, fleet: string, object: string, message: string): void {
    this.events.record({ type, reason, fleet, object, message });
    (type === 'Warning' ? this.logger.warn : this.logger.info).call(this.logger, 'event', {
      reason,
      object,
      message,
    });
  }

  private track(name: string, op: () => Promise<void>): void {
    const run = op()
      .catch((err) => this.logger.error('operation failed', { server: name, error: String(err) }))
      .finally(() => {
        this.busy.delete(name);
        this.wake();
      });
    this.busy.set(name, run);
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private async sleepUntilWoken(signal: AbortSignal): Promise<void> {
    if (this.woken || signal.aborted) {
      this.woken = false;
      return;
    }
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.wakeUp = () => ac.abort();
    try {
      await this.clock.sleep(this.resyncIntervalMs, ac.signal);
    } catch {
      // woken or aborted
    } finally {
      this.wakeUp = undefined;
      this.woken = false;
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async shutdownAll(): Promise<void> {
    await this.settled();
    const servers = await this.store.listServers();
    const allocated = servers.filter((s) => s.state === 'Allocated');
    if (allocated.length > 0)
      this.logger.warn('fleet stopping with live compositions', {
        compositions: allocated.map((s) => s.compositionId),
      });
    await this.runtime.close();
    for (const s of servers) {
      if (s.state === 'Allocated' && s.compositionId) await this.store.release(s.compositionId).catch(() => undefined);
      await this.store.removeServer(s.name).catch(() => undefined);
    }
  }
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function drainMessage(s: ServerRecord, fleet: FleetSpec | undefined): string {
  const limit = fleet ? ` (at most ${formatMs(fleet.drain.maxDrainTimeMs)})` : '';
  return `outdated template: draining; stops when composition ${s.compositionId ?? '?'} ends${limit}`;
}
