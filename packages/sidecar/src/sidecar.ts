import {
  Channel,
  checkSdkAnnotation,
  checkSdkLabel,
  CompositionWatch,
  FleetError,
  silentLogger,
  systemClock,
  withSdkEntry,
  type Clock,
  type Logger,
  type OutputEvent,
} from '@smelter-fleet/core';
import { linkV1, type sdkV1 } from '@smelter-fleet/proto';
import { initialHealth, nextHealth, type HealthState, type Observation } from './health.js';
import { callSmelter, SmelterWatch } from './smelter-watch.js';

export interface SidecarOptions {
  /** The server this sidecar serves. */
  serverName: string;
  /** Smelter's API base URL. Default `http://127.0.0.1:8081`. */
  smelterUrl?: string;
  /** `GET /status` period until the fleet sends its own, ms. Default 250. */
  healthPeriodMs?: number;
  /** Failed polls in a row that make Smelter unhealthy, until the fleet sends its own. Default 3. */
  failureThreshold?: number;
  /** How long "every output ended" must hold before the composition counts as over, ms. Default 1000. */
  compositionSettleMs?: number;
  /** Time allowed for `POST /api/reset` when recycling, ms. Default 5000. */
  resetTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
}

type Config = Required<Omit<linkV1.LinkConfig, 'maxDrainTimeMs'>> & { maxDrainTimeMs: number };

/**
 * The one place that knows whether the Smelter beside it is alive, idle, busy or finished. It watches
 * Smelter, takes the fleet's view of the server (from the link), keeps what code in the image said
 * through the SDK, and sums it all up in a report for the fleet. Recycling (`POST /api/reset`) happens
 * here because only the sidecar may reach Smelter's API.
 */
export class Sidecar {
  readonly serverName: string;
  readonly smelterUrl: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly settleMs: number;
  private readonly resetTimeoutMs: number;
  private config: Config;
  private health: HealthState = initialHealth;
  private view: linkV1.ServerView | undefined;
  private readonly state = {
    sdkReady: false,
    labels: {} as Record<string, string>,
    annotations: {} as Record<string, string>,
    shutdown: undefined as string | undefined,
    finished: undefined as { id: string; reason: string } | undefined,
    drained: undefined as { id: string; recycled: boolean } | undefined,
    lastSdkPing: undefined as number | undefined,
  };
  private composition: CompositionWatch | undefined;
  private draining: string | undefined;
  private stopping = false;
  private readonly watch: SmelterWatch;
  private readonly reportListeners = new Set<(report: linkV1.SidecarReport) => void>();
  private readonly serverWatchers = new Set<Channel<sdkV1.Server>>();
  private lastReport = '';
  private lastOutputs: string | undefined;

  constructor(options: SidecarOptions) {
    this.serverName = options.serverName;
    this.smelterUrl = options.smelterUrl ?? 'http://127.0.0.1:8081';
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.settleMs = options.compositionSettleMs ?? 1000;
    this.resetTimeoutMs = options.resetTimeoutMs ?? 5000;
    this.config = {
      healthPeriodMs: options.healthPeriodMs ?? 250,
      failureThreshold: options.failureThreshold ?? 3,
      heartbeatIntervalMs: 750,
      leaseMs: 3000,
      flushTimeMs: 1000,
      recycle: true,
      requireSdkReady: false,
      sdkHealthTimeoutMs: 0,
      maxDrainTimeMs: 4 * 3_600_000,
    };
    this.watch = new SmelterWatch(
      {
        url: this.smelterUrl,
        pollIntervalMs: this.config.healthPeriodMs,
        requestTimeoutMs: this.requestTimeoutMs(),
        logger: this.logger,
      },
      {
        observe: (obs) => this.observe(obs),
        outputs: (ids) => {
          this.composition?.observeOutputs(ids, this.clock.now());
          this.logOutputs();
        },
        event: (e) => this.outputEvent(e),
        tick: () => this.tick(),
      },
    );
  }

  /** Watches Smelter until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => {
      for (const w of this.serverWatchers) w.close();
    });
    return this.watch.run(signal);
  }

  get linkConfig(): Readonly<Config> {
    return this.config;
  }

  /** What the sidecar knows, whole: the fleet applies it idempotently. */
  report(): linkV1.SidecarReport {
    const s = this.state;
    return {
      health: {
        starting: linkV1.SmelterHealth.SMELTER_HEALTH_STARTING,
        healthy: linkV1.SmelterHealth.SMELTER_HEALTH_HEALTHY,
        unhealthy: linkV1.SmelterHealth.SMELTER_HEALTH_UNHEALTHY,
      }[this.health.health],
      healthReason: this.health.reason,
      sdkReady: s.sdkReady,
      finishedCompositionId: s.finished?.id ?? '',
      finishedReason: s.finished?.reason ?? '',
      shutdownRequested: s.shutdown !== undefined,
      shutdownReason: s.shutdown ?? '',
      drainedCompositionId: s.drained?.id ?? '',
      recycled: s.drained?.recycled ?? false,
      labels: { ...s.labels },
      annotations: { ...s.annotations },
    };
  }

  /** Called with the report whenever it changes. */
  onReport(listener: (report: linkV1.SidecarReport) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  /** The fleet's view of the server and its policy, from the link. */
  setView(view: linkV1.ServerView | undefined, config?: linkV1.LinkConfig): void {
    if (config) this.applyConfig(config);
    this.view = view;
    this.tend();
    this.publishServer();
  }

  /** The server as code in the image sees it (SDK GetServer). */
  server(): sdkV1.Server {
    const v = this.view;
    return {
      name: this.serverName,
      fleet: v?.fleet ?? '',
      state: v?.state ?? 'Starting',
      address: v?.address ?? '',
      ports: { ...v?.ports },
      compositionId: v?.compositionId ?? '',
      compositionMetadata: { ...v?.compositionMetadata },
      compositionToken: v?.compositionToken ?? '',
      labels: { ...v?.labels },
      annotations: { ...v?.annotations },
      stateChangedAt: v ? new Date(v.stateChangedAtMs) : undefined,
    };
  }

  /** The server now and on every change (SDK WatchServer). */
  watchServer(signal: AbortSignal): AsyncIterable<sdkV1.Server> {
    const channel = new Channel<sdkV1.Server>(signal);
    channel.push(this.server());
    this.serverWatchers.add(channel);
    signal.addEventListener('abort', () => this.serverWatchers.delete(channel), { once: true });
    return channel;
  }

  // SDK calls

  ready(): void {
    this.state.sdkReady = true;
    this.emitReport();
  }

  healthPing(): void {
    this.state.lastSdkPing = this.clock.now();
  }

  shutdown(reason: string): void {
    this.state.shutdown ??= reason || 'SDK Shutdown';
    this.emitReport();
    this.tend();
  }

  setLabel(key: string, value: string): void {
    checkSdkLabel(key, value);
    this.state.labels = withSdkEntry(this.state.labels, key, value);
    this.emitReport();
  }

  setAnnotation(key: string, value: string): void {
    checkSdkAnnotation(key, value);
    this.state.annotations = withSdkEntry(this.state.annotations, key, value);
    this.emitReport();
  }

  finishComposition(reason: string): void {
    const id = this.liveCompositionId();
    if (!id) throw new FleetError('FAILED_PRECONDITION', 'this server holds no live composition');
    this.finish(id, reason ? `FinishComposition: ${reason}` : 'FinishComposition called');
  }

  /** The supervised Smelter process ended. */
  smelterExited(reason: string): void {
    this.observe({ kind: 'fatal', reason });
  }

  /**
   * Smelter is being stopped on purpose: the server is shutting down, and the refused polls that follow
   * are not a failure to report (a report saying "unhealthy" could overtake the one saying "drained").
   */
  smelterStopping(reason: string): void {
    this.stopping = true;
    this.shutdown(reason);
  }

  /** Whether Smelter may be stopped now: no composition left to wait for. */
  mayStop(): boolean {
    const v = this.view;
    if (!v || !v.compositionId) return true;
    if (v.state === 'Allocated') return false;
    if (v.state === 'Draining') return this.state.drained?.id === v.compositionId;
    return true;
  }

  private liveCompositionId(): string | undefined {
    const v = this.view;
    return v && v.allocationLive && (v.state === 'Allocated' || v.state === 'Draining') ? v.compositionId : undefined;
  }

  private requestTimeoutMs(): number {
    return Math.max(100, Math.min(this.config.healthPeriodMs, 1000));
  }

  private applyConfig(c: linkV1.LinkConfig): void {
    const next: Config = {
      healthPeriodMs: c.healthPeriodMs || this.config.healthPeriodMs,
      failureThreshold: c.failureThreshold || this.config.failureThreshold,
      heartbeatIntervalMs: c.heartbeatIntervalMs || this.config.heartbeatIntervalMs,
      leaseMs: c.leaseMs || this.config.leaseMs,
      flushTimeMs: c.flushTimeMs,
      recycle: c.recycle,
      requireSdkReady: c.requireSdkReady,
      sdkHealthTimeoutMs: c.sdkHealthTimeoutMs,
      maxDrainTimeMs: c.maxDrainTimeMs || this.config.maxDrainTimeMs,
    };
    if (next.healthPeriodMs !== this.config.healthPeriodMs) {
      this.config = next;
      this.watch.retime(next.healthPeriodMs, this.requestTimeoutMs());
    }
    this.config = next;
  }

  private observe(obs: Observation): void {
    if (this.stopping && obs.kind !== 'answered') return;
    const before = this.health.health;
    this.health = nextHealth(this.health, obs, this.config.failureThreshold);
    if (this.health.health !== before) {
      (this.health.health === 'unhealthy' ? this.logger.warn : this.logger.info)('Smelter health', {
        health: this.health.health,
        reason: this.health.reason,
      });
      this.emitReport();
    }
  }

  private outputEvent(e: OutputEvent): void {
    this.composition?.observeEvent(e, this.clock.now());
    this.logOutputs();
    this.tick();
  }

  /** Time-driven checks, run after every poll. */
  private tick(): void {
    const now = this.clock.now();
    const { sdkHealthTimeoutMs } = this.config;
    const last = this.state.lastSdkPing;
    if (sdkHealthTimeoutMs > 0 && last !== undefined && now - last > sdkHealthTimeoutMs)
      this.observe({ kind: 'fatal', reason: `SDK health pings stopped ${now - last} ms ago` });
    const c = this.composition;
    const why = c?.finished(now);
    if (c && why) this.finish(c.compositionId, why);
  }

  private logOutputs(): void {
    const outputs = this.composition?.describe();
    if (outputs === undefined || outputs === this.lastOutputs) return;
    this.lastOutputs = outputs;
    this.logger.info('composition outputs', { composition: this.composition!.compositionId, outputs });
  }

  private finish(id: string, reason: string): void {
    if (this.state.finished?.id === id) return;
    this.logger.info('composition finished', { composition: id, reason });
    this.state.finished = { id, reason };
    this.composition = undefined;
    this.emitReport();
  }

  /** Acts on the fleet's view: follow the live composition, flush and recycle after it. */
  private tend(): void {
    const v = this.view;
    const live = this.liveCompositionId();
    if (live && this.state.finished?.id !== live) {
      if (this.composition?.compositionId !== live) {
        this.logger.info('composition started', { composition: live });
        this.composition = new CompositionWatch(live, this.settleMs);
        this.watch.pollNow();
      }
    } else {
      this.composition = undefined;
    }
    if (v?.state === 'Draining' && v.compositionId && !v.allocationLive && this.state.drained?.id !== v.compositionId)
      void this.drain(v.compositionId);
  }

  private async drain(id: string): Promise<void> {
    if (this.draining === id) return;
    this.draining = id;
    try {
      await this.clock.sleep(this.config.flushTimeMs);
      let recycled = false;
      if (this.config.recycle && this.state.shutdown === undefined) {
        try {
          const res = await callSmelter(this.smelterUrl, '/api/reset', {
            method: 'POST',
            body: {},
            timeoutMs: this.resetTimeoutMs,
          });
          recycled = res.status === 200;
          if (!recycled)
            this.logger.warn('Smelter reset failed; the server will be replaced', {
              status: res.status,
              body: res.body.slice(0, 200),
            });
        } catch (err) {
          this.logger.warn('Smelter reset failed; the server will be replaced', { error: String(err) });
        }
      }
      this.logger.info('drained', { composition: id, recycled });
      this.state.drained = { id, recycled };
      this.emitReport();
    } finally {
      this.draining = undefined;
    }
  }

  private emitReport(): void {
    const report = this.report();
    const key = JSON.stringify(report);
    if (key === this.lastReport) return;
    this.lastReport = key;
    for (const l of this.reportListeners) l(report);
  }

  private publishServer(): void {
    if (this.serverWatchers.size === 0) return;
    const server = this.server();
    for (const w of this.serverWatchers) w.push(server);
  }
}
