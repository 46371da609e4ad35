import {
  isFleetError,
  isTerminal,
  newSuffix,
  silentLogger,
  systemClock,
  type Clock,
  type FleetSpec,
  type Logger,
  type Runtime,
  type ServerExit,
  type ServerRecord,
  type ServerUpdate,
  type Store,
} from '@smelter-fleet/core';

export interface FleetControllerOptions {
  store: Store;
  runtime: Runtime;
  clock?: Clock;
  logger?: Logger;
  /** Longest pause between two passes when nothing happens, ms. Default 250. */
  resyncIntervalMs?: number;
  /** Grace between SIGINT and SIGKILL when stopping a server, ms. Default 5000. */
  stopGraceMs?: number;
}

/**
 * Keeps each fleet at its replica count on one runtime: launches servers, replaces failed ones,
 * stops drained ones, retires surplus Ready ones, and never stops an Allocated one. Health,
 * readiness and recycling are the sidecars' (reported over the fleet link); the controller enforces
 * the startup timeout and the max drain time. Level-triggered: every pass recomputes from the store,
 * woken by the store's change feed, runtime exits and a resync timer.
 */
export class FleetController {
  private readonly store: Store;
  private readonly runtime: Runtime;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly resyncIntervalMs: number;
  private readonly stopGraceMs: number;
  /** Servers with an operation under way (launch, reset, stop); a pass leaves them alone. */
  private readonly busy = new Map<string, Promise<void>>();
  private readonly exitedEarly = new Set<string>();
  /** Launches under way per fleet: not in the store yet, but they count toward replicas. */
  private readonly launching = new Map<string, number>();
  private wakeUp: (() => void) | undefined;
  private woken = false;

  constructor(options: FleetControllerOptions) {
    this.store = options.store;
    this.runtime = options.runtime;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 250;
    this.stopGraceMs = options.stopGraceMs ?? 5000;
  }

  /** Reconciles until `signal` aborts, then stops every server and removes it from the store. */
  async run(signal: AbortSignal): Promise<void> {
    const offExit = this.runtime.onExit((exit) => void this.onExit(exit));
    const watching = (async () => {
      for await (const _ of this.store.watch(signal)) this.wake();
    })();
    try {
      while (!signal.aborted) {
        try {
          await this.reconcile();
        } catch (err) {
          this.logger.error('reconcile failed', { error: String(err) });
        }
        await this.sleepUntilWoken(signal);
      }
    } finally {
      await watching;
      await this.shutdownAll();
      offExit();
    }
  }

  /** Resolves when no operation is under way (for tests and orderly shutdown). */
  async settled(): Promise<void> {
    while (this.busy.size > 0) await Promise.allSettled(this.busy.values());
  }

  /** One pass over every fleet. */
  async reconcile(): Promise<void> {
    // Taken before listing, so a launch finishing in between is counted twice (fixed next pass), never missed.
    const launching = new Map(this.launching);
    const [fleets, servers] = await Promise.all([this.store.listFleets(), this.store.listServers()]);
    const byName = new Map(fleets.map((f) => [f.name, f]));
    const byFleet = new Map<string, ServerRecord[]>();
    for (const s of servers) byFleet.set(s.fleet, [...(byFleet.get(s.fleet) ?? []), s]);
    for (const name of new Set([...byName.keys(), ...byFleet.keys()])) {
      await this.reconcileFleet(byName.get(name), name, byFleet.get(name) ?? [], launching.get(name) ?? 0);
    }
  }

  private async reconcileFleet(
    fleet: FleetSpec | undefined,
    name: string,
    servers: ServerRecord[],
    launching: number,
  ): Promise<void> {
    const now = this.clock.now();
    const desired = fleet?.replicas ?? 0;
    const live: ServerRecord[] = [];
    await Promise.all(
      servers.map(async (s) => {
        if (this.busy.has(s.name)) {
          if (!isTerminal(s.state)) live.push(s);
          return;
        }
        const next = fleet ? await this.tend(fleet, s, now) : s;
        if (next && !isTerminal(next.state)) live.push(next);
        else if (next) this.retire(next, next.state === 'Shutdown' ? 'stopping' : `replacing ${next.state} server`);
      }),
    );

    const count = live.length + launching;
    if (fleet && count < desired) {
      for (let i = count; i < desired; i++) this.launch(fleet);
    } else if (live.length > desired) {
      // Surplus: never an Allocated or Draining server; Starting first, then the newest Ready.
      const rank = (s: ServerRecord) => (s.state === 'Starting' ? 0 : 1);
      const spare = live
        .filter((s) => (s.state === 'Starting' || s.state === 'Ready') && !this.busy.has(s.name))
        .sort((a, b) => rank(a) - rank(b) || b.createdAt - a.createdAt);
      for (const s of spare.slice(0, live.length - desired)) {
        const stopped = await this.update(s, { event: 'Shutdown', reason: 'scaled down' });
        if (stopped) this.retire(stopped, `scaling ${name} down to ${desired}`);
      }
    }
  }

  /** Startup timeout and max drain time of one server; returns its record after any change. */
  private async tend(fleet: FleetSpec, s: ServerRecord, now: number): Promise<ServerRecord | undefined> {
    const { startupTimeoutMs } = fleet.health;
    if (s.state === 'Starting' && now - s.createdAt > startupTimeoutMs)
      return this.update(s, { event: 'HealthFailed', reason: `not Ready within ${startupTimeoutMs} ms of launch` });
    const { maxDrainTimeMs } = fleet.drain;
    if (s.state === 'Draining' && now - s.stateChangedAt >= maxDrainTimeMs) {
      this.logger.warn('max drain time exceeded; stopping server', {
        server: s.name,
        composition: s.compositionId,
        maxDrainTimeMs,
      });
      return this.update(s, { event: 'Shutdown', reason: `max drain time ${maxDrainTimeMs} ms exceeded` });
    }
    return s;
  }

  private launch(fleet: FleetSpec): void {
    const name = `${fleet.name}-${newSuffix()}`;
    this.launching.set(fleet.name, (this.launching.get(fleet.name) ?? 0) + 1);
    this.track(name, async () => {
      try {
        const launched = await this.runtime.start({
          name,
          fleet: fleet.name,
          command: fleet.template.command,
          env: fleet.template.env,
        });
        await this.store.addServer({
          name,
          fleet: fleet.name,
          region: fleet.region,
          address: launched.address,
          ports: launched.ports,
          labels: { ...fleet.template.labels },
          node: launched.node,
          ...(launched.pid !== undefined && { pid: launched.pid }),
        });
        this.logger.info('server launched', { server: name, fleet: fleet.name, pid: launched.pid });
        if (this.exitedEarly.delete(name))
          await this.store.updateServer(name, { event: 'Failed', reason: 'exited during launch' });
      } catch (err) {
        this.logger.error('launch failed', { server: name, fleet: fleet.name, error: String(err) });
        await this.runtime.stop(name, { graceMs: 0 });
        // Let the next pass try again without spinning on a command that cannot start.
        await this.clock.sleep(1000);
      } finally {
        this.launching.set(fleet.name, (this.launching.get(fleet.name) ?? 1) - 1);
      }
    });
  }

  private retire(s: ServerRecord, why: string): void {
    this.logger.info('stopping server', { server: s.name, why });
    this.track(s.name, () => this.stopAndRemove(s));
  }

  private async stopAndRemove(s: ServerRecord): Promise<void> {
    await this.runtime.stop(s.name, { graceMs: this.stopGraceMs });
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
