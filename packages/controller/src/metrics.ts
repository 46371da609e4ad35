import { SERVER_STATES } from '@smelter-fleet/core';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface ControllerMetricsOptions {
  /** Registry the metrics are registered in. Default: a new one (see `registry`). */
  registry?: Registry;
}

/** The controller's Prometheus metrics; serve `registry.metrics()` on /metrics (see `up --metrics-port`). */
export class ControllerMetrics {
  readonly registry: Registry;
  /** Servers by fleet and state, as of the last pass. */
  readonly servers: Gauge<'fleet' | 'state'>;
  /** Servers of an older template than the fleet's, as of the last pass. */
  readonly outdated: Gauge<'fleet'>;
  readonly replicas: Gauge<'fleet'>;
  /** Servers stopped because they were still Draining when the fleet's max drain time ran out. */
  readonly drainTimeouts: Counter<'fleet'>;
  readonly launched: Counter<'fleet'>;
  /** Servers stopped, by why: surplus, outdated, drained, failed, drain-timeout. */
  readonly stopped: Counter<'fleet' | 'why'>;
  /** Time of one reconcile pass over every fleet (store reads, planning, and issuing the changes). */
  readonly reconcileSeconds: Histogram;

  constructor(options: ControllerMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    this.servers = new Gauge({
      name: 'smelter_fleet_servers',
      help: 'Servers by fleet and state',
      labelNames: ['fleet', 'state'],
      registers,
    });
    this.outdated = new Gauge({
      name: 'smelter_fleet_servers_outdated',
      help: 'Servers running an older template than their fleet',
      labelNames: ['fleet'],
      registers,
    });
    this.replicas = new Gauge({
      name: 'smelter_fleet_replicas_desired',
      help: 'Desired Ready + Allocated servers of the fleet',
      labelNames: ['fleet'],
      registers,
    });
    this.drainTimeouts = new Counter({
      name: 'smelter_fleet_drain_timeouts_total',
      help: 'Servers stopped because the max drain time ran out (a composition may have been cut)',
      labelNames: ['fleet'],
      registers,
    });
    this.launched = new Counter({
      name: 'smelter_fleet_servers_launched_total',
      help: 'Servers launched',
      labelNames: ['fleet'],
      registers,
    });
    this.stopped = new Counter({
      name: 'smelter_fleet_servers_stopped_total',
      help: 'Servers stopped, by why',
      labelNames: ['fleet', 'why'],
      registers,
    });
    this.reconcileSeconds = new Histogram({
      name: 'smelter_fleet_reconcile_duration_seconds',
      help: 'Duration of one reconcile pass over every fleet',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  /** Sets the per-state gauges of one fleet (every state, so a state that emptied reads 0). */
  setFleet(fleet: string, byState: Record<string, number>, outdated: number, replicas: number): void {
    for (const state of SERVER_STATES) this.servers.set({ fleet, state }, byState[state] ?? 0);
    this.outdated.set({ fleet }, outdated);
    this.replicas.set({ fleet }, replicas);
  }
}
