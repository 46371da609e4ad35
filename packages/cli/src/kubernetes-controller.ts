import { setMaxListeners } from 'node:events';
import { FleetAutoscaler, type AutoscalerStatus } from '@smelter-fleet/autoscaler';
import { FleetController, type ControllerMetrics } from '@smelter-fleet/controller';
import { FLEET_API_VERSION, FleetError, type AutoscalerSpec, type Logger, type Store } from '@smelter-fleet/core';
import {
  defaultInvolvedObject,
  FleetSync,
  KubeEventRecorder,
  KubernetesRuntime,
  LeaderElector,
  PodLabeler,
  type AutoscalerSink,
  type KubeConfig,
  type KubernetesRuntimeOptions,
} from '@smelter-fleet/kubernetes';

export interface KubernetesControllerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  store: Store;
  /** The installation's fleet link secret (pods' link tokens derive from it). Never logged. */
  linkSecret: string;
  /** host:port of the allocators' fleet link as pods reach it. */
  linkAddress: string;
  /** Image with the smelter-fleet CLI, run as each pod's sidecar. */
  sidecarImage: string;
  /** Pod template settings beyond the required ones (service account, default Smelter image...). */
  pod?: Partial<Omit<KubernetesRuntimeOptions, 'kubeConfig' | 'fleets' | 'linkSecret' | 'namespace'>>;
  /** Name of the coordination.k8s.io Lease the replicas elect a leader on. */
  leaseName: string;
  /** holderIdentity of this replica. Default: host name, pid and a random suffix. */
  identity?: string;
  /** Lease timings, ms (client-go's defaults: 15000 / 10000 / 2000). */
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  metrics?: ControllerMetrics;
  logger: Logger;
  out: (text: string) => void;
}

/**
 * The controller on Kubernetes: replicas elect a leader on a Lease; only the leader mirrors the custom resources into
 * the store (FleetSync), runs the FleetController with pods as servers (KubernetesRuntime), keeps pod labels in step
 * with the store (PodLabeler) and runs the SmelterFleetAutoscalers. Losing the lease stops all of that at once (pods
 * are left running for the next leader to adopt); the replica then campaigns again.
 */
export async function runKubernetesController(
  options: KubernetesControllerOptions,
  signal: AbortSignal,
): Promise<void> {
  const { kubeConfig, namespace, logger, out } = options;
  const elector = new LeaderElector({
    kubeConfig,
    namespace,
    leaseName: options.leaseName,
    ...(options.identity && { identity: options.identity }),
    ...(options.leaseDurationMs !== undefined && { leaseDurationMs: options.leaseDurationMs }),
    ...(options.renewDeadlineMs !== undefined && { renewDeadlineMs: options.renewDeadlineMs }),
    ...(options.retryPeriodMs !== undefined && { retryPeriodMs: options.retryPeriodMs }),
    logger,
    onNewLeader: (id) => out(`leader: ${id}${id === elector.identity ? ' (this replica)' : ''}`),
  });
  out(`controller ${elector.identity}: campaigning for lease ${namespace}/${options.leaseName}`);
  await elector.run(signal, (leading) => lead(options, elector.identity, leading));
}

async function lead(options: KubernetesControllerOptions, identity: string, signal: AbortSignal): Promise<void> {
  const { kubeConfig, namespace, store, logger, out } = options;
  out(`leading: reconciling namespace ${namespace}`);
  // Every part below listens on this one signal, and so does each launch under way (a thousand, scaling 0 -> 1,000).
  setMaxListeners(0, signal);
  // The resolver and the autoscalers' callback need the FleetSync, which needs them: through this holder.
  const late: { sync?: FleetSync } = {};
  const runtime = new KubernetesRuntime({
    ...options.pod,
    // The pods' owner from FleetSync's cache: no GET of the SmelterFleet per launch.
    owner: async (fleet) => {
      const uid = late.sync?.fleetResource(fleet)?.metadata.uid;
      return uid
        ? { apiVersion: FLEET_API_VERSION, kind: 'SmelterFleet', name: fleet, uid, controller: true }
        : undefined;
    },
    kubeConfig,
    namespace,
    fleets: store,
    linkSecret: options.linkSecret,
    linkAddress: options.linkAddress,
    sidecarImage: options.sidecarImage,
    logger,
  });
  const events = new KubeEventRecorder({
    kubeConfig,
    namespace,
    instance: identity,
    logger,
    resolve: (object) => {
      const ref = defaultInvolvedObject(object, namespace);
      if (!ref) return undefined;
      const uid =
        ref.kind === 'SmelterFleet'
          ? late.sync?.fleetResource(ref.name)?.metadata.uid
          : ref.kind === 'Pod'
            ? runtime.pod(ref.name)?.metadata?.uid
            : undefined;
      return uid ? { ...ref, uid } : ref;
    },
  });
  const autoscalers = new AutoscalerRunner(store, logger, (status) => {
    out(
      `autoscaler ${status.name}: fleet ${status.fleetName} ${status.previousReplicas} -> ${status.desiredReplicas} (${status.reason})`,
    );
    late.sync?.autoscalerChanged(status.name);
    if (status.desiredReplicas !== undefined)
      late.sync?.scaleFleet(status.fleetName, status.desiredReplicas, signal).catch((err: unknown) => {
        if (!signal.aborted)
          logger.warn('cannot write the scale subresource', { fleet: status.fleetName, error: String(err) });
      });
  });
  const sync = new FleetSync({ kubeConfig, namespace, store, events, autoscalers, logger });
  late.sync = sync;
  const syncing = sync.run(signal);
  try {
    await Promise.all([runtime.open(signal), sync.synced()]);
  } catch (err) {
    if (!signal.aborted) logger.error('cannot start reconciling', { error: String(err) });
    await syncing;
    await runtime.detach();
    return;
  }
  const controller = new FleetController({
    store,
    runtime,
    logger,
    events,
    ...(options.metrics && { metrics: options.metrics }),
    // A leader that loses the lease leaves the pods to the next one.
    stopServersOnExit: false,
  });
  // Leadership lost: the runtime lets go at once, so no operation under way (a pod deletion waiting out its grace
  // period) holds this replica; the next leader adopts what is left.
  const detach = () => void runtime.detach();
  signal.addEventListener('abort', detach, { once: true });
  const labeler = new PodLabeler({ kubeConfig, namespace, store, currentPod: (name) => runtime.pod(name), logger });
  const running = controller.run(signal);
  const labeling = labeler.run(signal);
  const scaling = autoscalers.run(signal);
  await Promise.all([running, labeling, scaling, syncing]);
  signal.removeEventListener('abort', detach);
  await runtime.detach();
  await events.flush();
  out('stopped leading');
}

/**
 * Runs the SmelterFleetAutoscalers as the custom resources come and go: a new or changed spec is applied to the
 * running FleetAutoscaler; a removed one (or one moved to another fleet) restarts it with the rest.
 */
class AutoscalerRunner implements AutoscalerSink {
  private readonly specs = new Map<string, AutoscalerSpec>();
  private current: { autoscaler: FleetAutoscaler; abort: AbortController; running: Promise<void> } | undefined;
  private signal: AbortSignal | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly onScale: (status: AutoscalerStatus) => void,
  ) {}

  apply(spec: AutoscalerSpec): void {
    for (const [name, other] of this.specs)
      if (name !== spec.name && other.fleetName === spec.fleetName)
        throw new FleetError('FAILED_PRECONDITION', `fleet "${spec.fleetName}" already has autoscaler "${name}"`, {
          field: 'spec.fleetName',
        });
    const prev = this.specs.get(spec.name);
    this.specs.set(spec.name, spec);
    if (this.current && (!prev || prev.fleetName === spec.fleetName)) this.current.autoscaler.apply(spec);
    else this.restart();
  }

  remove(name: string): void {
    if (this.specs.delete(name)) this.restart();
  }

  status(name: string): { desiredReplicas?: number; lastScaleAt?: number; lastError?: string } | undefined {
    return this.current?.autoscaler.status().find((s) => s.name === name);
  }

  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    this.restart();
    await new Promise<void>((resolve) =>
      signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    await this.current?.running;
  }

  private restart(): void {
    const signal = this.signal;
    if (!signal || signal.aborted) return;
    this.current?.abort.abort();
    const abort = new AbortController();
    signal.addEventListener('abort', () => abort.abort(), { once: true });
    const autoscaler = new FleetAutoscaler({
      store: this.store,
      autoscalers: [...this.specs.values()],
      logger: this.logger,
      onScale: this.onScale,
    });
    const previous = this.current?.running ?? Promise.resolve();
    // One at a time: the new one starts deciding once the old one has stopped.
    const running = previous.then(() => autoscaler.run(abort.signal));
    this.current = { autoscaler, abort, running };
  }
}
