import { parseArgs } from 'node:util';
import { FleetAutoscaler } from '@smelter-fleet/autoscaler';
import { ControllerMetrics, FleetController } from '@smelter-fleet/controller';
import { jsonLogger, linkToken } from '@smelter-fleet/core';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { parsing, port } from './args.js';
import { logLevel, sharedStoreValue, type ScaleOutContext } from './allocator-command.js';
import { CommandError } from './client-commands.js';
import { serveMetrics } from './metrics-server.js';
import { openStore } from './store-option.js';
import { loadFleetFile } from './up.js';

export interface ControllerContext extends ScaleOutContext {
  /** $SMELTER_PATH: the Smelter binary; unset means the emulator. */
  smelterPath: string | undefined;
  /** argv that runs `smelter-fleet supervise` (each server runs under its sidecar). */
  superviseCommand: readonly string[];
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
      },
    }),
  );
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
