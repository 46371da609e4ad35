import { parseArgs } from 'node:util';
import { FleetAutoscaler } from '@smelter-fleet/autoscaler';
import { ControllerMetrics, FleetController } from '@smelter-fleet/controller';
import { jsonLogger, linkToken, parseDurationMs } from '@smelter-fleet/core';
import { loadKubeConfig, type KubeConfig } from '@smelter-fleet/kubernetes';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { keyValues, parsing, port, UsageError } from './args.js';
import { logLevel, sharedStoreValue, type ScaleOutContext } from './allocator-command.js';
import { CommandError } from './client-commands.js';
import { serveMetrics } from './metrics-server.js';
import { openStore } from './store-option.js';
import { loadFleetFile } from './up.js';
import { runKubernetesController } from './kubernetes-controller.js';

export interface ControllerContext extends ScaleOutContext {
  /** $SMELTER_PATH: the Smelter binary; unset means the emulator. */
  smelterPath: string | undefined;
  /** argv that runs `smelter-fleet supervise` (each server runs under its sidecar). */
  superviseCommand: readonly string[];
  /** Kubernetes settings from the environment (`--kubernetes`). */
  kubernetes?: {
    /** Running in a pod (KUBERNETES_SERVICE_HOST set): the in-cluster config applies when no --kubeconfig is given. */
    inCluster: boolean;
    /** $POD_NAMESPACE (downward API): the default --namespace. */
    namespace: string | undefined;
    /** $POD_NAME: this replica's identity on the Lease. */
    podName: string | undefined;
  };
}

/**
 * `smelter-fleet controller --store redis://... [-f fleet.yaml] [--link host:port]`: the FleetController
 * with the local process runtime, against the shared store. Servers' sidecars link to an allocator
 * replica (`--link`), with tokens from the installation's shared link secret.
 */
export async function controllerCommand(argv: string[], ctx: ControllerContext): Promise<void> {
  const { values } = parsing('controller', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        store: { type: 'string' },
        file: { type: 'string', short: 'f' },
        link: { type: 'string' },
        'log-level': { type: 'string' },
        'metrics-port': { type: 'string' },
        kubernetes: { type: 'boolean' },
        kubeconfig: { type: 'string' },
        namespace: { type: 'string' },
        'sidecar-image': { type: 'string' },
        'leader-election-id': { type: 'string' },
        'lease-duration': { type: 'string' },
        'renew-deadline': { type: 'string' },
        'retry-period': { type: 'string' },
        'pod-annotation': { type: 'string', multiple: true },
      },
    }),
  );
  if (values.kubernetes) return kubernetesControllerCommand(values, ctx);
  for (const flag of [
    'kubeconfig',
    'namespace',
    'sidecar-image',
    'leader-election-id',
    'lease-duration',
    'renew-deadline',
    'retry-period',
    'pod-annotation',
  ] as const)
    if (values[flag] !== undefined) throw new UsageError(`controller: --${flag} needs --kubernetes`);
  const level = logLevel('controller', values['log-level']);
  const logger = jsonLogger({ level });
  const storeValue = sharedStoreValue('controller', values.store ?? ctx.defaultStore);
  const { fleets, autoscalers } = values.file
    ? await loadFleetFile(values.file, 'controller')
    : { fleets: [], autoscalers: [] };
  const opened = await openStore('controller', storeValue, { logger, linkSecret: ctx.linkSecret });
  const { store } = opened;
  for (const f of fleets) await store.putFleet(f);
  const link = values.link ?? '127.0.0.1:50051';
  const runtime = new ProcessRuntime({
    defaultCommand: ctx.smelterPath ? [ctx.smelterPath] : [process.execPath, emulatorMainPath],
    logger,
    sidecar: {
      command: [...ctx.superviseCommand, '--log-level', level],
      link,
      linkToken: (name) => linkToken(opened.linkSecret, name),
    },
  });
  const killAll = () => runtime.killAll();
  process.once('exit', killAll);
  const metrics = new ControllerMetrics();
  const controller = new FleetController({ store, runtime, logger, metrics });
  const metricsServer =
    values['metrics-port'] === undefined
      ? undefined
      : await serveMetrics(metrics.registry, '127.0.0.1', port('metrics-port', values['metrics-port'], 0)).catch(
          async (err: Error) => {
            await store.close();
            throw new CommandError(`controller: cannot serve metrics: ${err.message}`);
          },
        );
  // The file's autoscalers decide here, from the shared store's change feed (allocations on every replica).
  const autoscaler = new FleetAutoscaler({
    store,
    autoscalers,
    logger,
    onScale: (a) =>
      ctx.out(`autoscaler ${a.name}: fleet ${a.fleetName} ${a.previousReplicas} -> ${a.desiredReplicas} (${a.reason})`),
  });
  const stop = new AbortController();
  const names = (await store.listFleets()).map((f) => f.name);
  ctx.out(
    `smelter-fleet controller: store ${opened.description}, fleets ${names.join(', ') || '(none yet)'}, sidecars link to ${link}`,
  );
  if (metricsServer) ctx.out(`metrics: ${metricsServer.url} (Prometheus)`);
  for (const a of autoscalers) ctx.out(`autoscaler ${a.name}: ${a.policy.type} policy on fleet ${a.fleetName}`);
  const running = controller.run(stop.signal);
  const scaling = autoscaler.run(stop.signal);
  const why = await Promise.race([ctx.stopRequested, running.then(() => 'controller stopped')]);
  ctx.out(`stopping (${why}): stopping every server...`);
  stop.abort();
  await running;
  await scaling;
  await metricsServer?.close();
  await store.close();
  process.off('exit', killAll);
  ctx.out('stopped: every server process has exited');
}

function durationFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDurationMs(value);
  if (ms === undefined) throw new UsageError(`controller: --${flag} "${value}": expected a duration like 15s or 500ms`);
  return ms;
}

/**
 * `smelter-fleet controller --kubernetes --store redis://... --link host:port --sidecar-image IMAGE [--kubeconfig F]
 * [--namespace N] [--leader-election-id ID]`: fleets from SmelterFleet resources, servers as pods, one leader among
 * the replicas (a Lease).
 */
async function kubernetesControllerCommand(
  values: {
    store?: string | undefined;
    file?: string | undefined;
    link?: string | undefined;
    'log-level'?: string | undefined;
    'metrics-port'?: string | undefined;
    kubeconfig?: string | undefined;
    namespace?: string | undefined;
    'sidecar-image'?: string | undefined;
    'leader-election-id'?: string | undefined;
    'lease-duration'?: string | undefined;
    'renew-deadline'?: string | undefined;
    'retry-period'?: string | undefined;
    'pod-annotation'?: string[] | undefined;
  },
  ctx: ControllerContext,
): Promise<void> {
  if (values.file !== undefined)
    throw new UsageError('controller: -f does not apply with --kubernetes (fleets are SmelterFleet resources)');
  const level = logLevel('controller', values['log-level']);
  const logger = jsonLogger({ level });
  const storeValue = sharedStoreValue('controller', values.store ?? ctx.defaultStore);
  if (!values.link)
    throw new UsageError(
      "controller: --link host:port is needed with --kubernetes (the allocators' fleet link as pods reach it)",
    );
  const namespace = values.namespace ?? ctx.kubernetes?.namespace ?? 'default';
  const leaseDurationMs = durationFlag('lease-duration', values['lease-duration']);
  const renewDeadlineMs = durationFlag('renew-deadline', values['renew-deadline']);
  const retryPeriodMs = durationFlag('retry-period', values['retry-period']);
  const podAnnotations = keyValues('pod-annotation', values['pod-annotation']);
  // client-go's rules: the leader must give up (renew deadline) before others may take over (lease duration).
  const [lease, renew, retry] = [leaseDurationMs ?? 15_000, renewDeadlineMs ?? 10_000, retryPeriodMs ?? 2_000];
  if (lease < 1000) throw new UsageError('controller: --lease-duration must be at least 1s');
  if (renew >= lease) throw new UsageError('controller: --renew-deadline must be shorter than --lease-duration');
  if (retry <= 0 || retry >= renew)
    throw new UsageError('controller: --retry-period must be more than 0 and shorter than --renew-deadline');
  let kubeConfig: KubeConfig;
  try {
    kubeConfig = loadKubeConfig({ kubeconfigPath: values.kubeconfig, inCluster: ctx.kubernetes?.inCluster ?? false });
  } catch (err) {
    throw new CommandError(`controller: --kubeconfig: ${(err as Error).message}`);
  }
  const opened = await openStore('controller', storeValue, { logger, linkSecret: ctx.linkSecret });
  const metrics = new ControllerMetrics();
  const metricsServer =
    values['metrics-port'] === undefined
      ? undefined
      : await serveMetrics(metrics.registry, '0.0.0.0', port('metrics-port', values['metrics-port'], 0)).catch(
          async (err: Error) => {
            await opened.store.close();
            throw new CommandError(`controller: cannot serve metrics: ${err.message}`);
          },
        );
  ctx.out(
    `smelter-fleet controller --kubernetes: API server ${kubeConfig.getCurrentCluster()?.server}, namespace ${namespace}, ` +
      `store ${opened.description}, sidecars link to ${values.link}`,
  );
  if (metricsServer) ctx.out(`metrics: ${metricsServer.url} (Prometheus)`);
  const stop = new AbortController();
  const running = runKubernetesController(
    {
      kubeConfig,
      namespace,
      store: opened.store,
      linkSecret: opened.linkSecret,
      linkAddress: values.link,
      sidecarImage: values['sidecar-image'] ?? 'smelter-fleet:latest',
      pod: { podAnnotations },
      leaseName: values['leader-election-id'] ?? 'smelter-fleet-controller',
      ...(ctx.kubernetes?.podName && { identity: ctx.kubernetes.podName }),
      ...(leaseDurationMs !== undefined && { leaseDurationMs }),
      ...(renewDeadlineMs !== undefined && { renewDeadlineMs }),
      ...(retryPeriodMs !== undefined && { retryPeriodMs }),
      metrics,
      logger,
      out: ctx.out,
    },
    stop.signal,
  ).catch((err: unknown) => {
    throw new CommandError(`controller: ${(err as Error).message}`);
  });
  const why = await Promise.race([ctx.stopRequested, running.then(() => 'controller stopped')]);
  ctx.out(`stopping (${why}): pods are left running for the next leader`);
  stop.abort();
  await running;
  await metricsServer?.close();
  await opened.store.close();
  ctx.out('stopped');
}
