import {
  isFleetError,
  type Clock,
  type LaunchedServer,
  type Runtime,
  type ServerExit,
  type ServerLaunch,
  type Store,
} from '@smelter-fleet/core';

export interface SimRuntimeOptions {
  store: Store;
  clock: Clock;
  /** Launch to Ready, ms. */
  coldStartMs: number;
}

/**
 * A Runtime with no processes, for the simulator: a launched server turns Ready after the cold start (as its
 * sidecar would report), and a released one is recycled (or replaced) after the fleet's flush time, as its
 * sidecar would do. Timing comes only from the injected clock.
 */
export class SimRuntime implements Runtime {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly coldStartMs: number;
  private readonly servers = new Map<string, { launched: LaunchedServer; timers: AbortController }>();
  private readonly listeners = new Set<(exit: ServerExit) => void>();
  /** Launches so far. */
  launches = 0;

  constructor(options: SimRuntimeOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.coldStartMs = options.coldStartMs;
  }

  async start(launch: ServerLaunch): Promise<LaunchedServer> {
    const launched: LaunchedServer = {
      name: launch.name,
      address: '10.0.0.1',
      node: 'sim',
      ports: { api: 8081, whip_whep: 9000, rtmp: 1935 },
    };
    const timers = new AbortController();
    this.servers.set(launch.name, { launched, timers });
    this.launches++;
    void this.clock.sleep(this.coldStartMs, timers.signal).then(
      () => this.report(launch.name, 'Healthy'),
      () => undefined,
    );
    return launched;
  }

  async stop(name: string): Promise<void> {
    const server = this.servers.get(name);
    if (!server) return;
    server.timers.abort();
    this.servers.delete(name);
    for (const l of this.listeners) l({ name, code: 0, signal: null, expected: true, lastOutput: [] });
  }

  onExit(listener: (exit: ServerExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): LaunchedServer[] {
    return [...this.servers.values()].map((s) => s.launched);
  }

  async close(): Promise<void> {
    for (const name of [...this.servers.keys()]) await this.stop(name);
  }

  /** The sidecars' part after a release: flush, then recycle (or stop, for Replace). Runs until `signal` aborts. */
  async runSidecars(signal: AbortSignal): Promise<void> {
    for await (const event of this.store.watch(signal)) {
      if (event.type !== 'server' || event.removed) continue;
      const s = event.server;
      const server = this.servers.get(s.name);
      if (s.state !== 'Draining' || !s.compositionId || !server) continue;
      const fleet = await this.store.getFleet(s.fleet);
      const flushTimeMs = fleet?.drain.flushTimeMs ?? 0;
      const recycle = fleet?.drain.onRelease !== 'Replace';
      void this.clock.sleep(flushTimeMs, server.timers.signal).then(
        () => this.report(s.name, recycle ? 'Recycle' : 'Shutdown'),
        () => undefined,
      );
    }
  }

  private async report(name: string, event: 'Healthy' | 'Recycle' | 'Shutdown'): Promise<void> {
    try {
      await this.store.updateServer(name, { event });
    } catch (err) {
      // The server moved on meanwhile (stopped, drained for good): nothing to report.
      if (!isFleetError(err, 'NOT_FOUND') && !isFleetError(err, 'FAILED_PRECONDITION')) throw err;
    }
  }
}
