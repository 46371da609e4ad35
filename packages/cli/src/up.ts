import { readFile } from 'node:fs/promises';
import {
  allocationService,
  DEFAULT_APPLY_HANDLERS,
  fleetService,
  startAllocatorServer,
  type FleetRuntimeInfo,
} from '@smelter-fleet/allocator';
import { FleetAutoscaler } from '@smelter-fleet/autoscaler';
import { ControllerMetrics, FleetController } from '@smelter-fleet/controller';
import {
  AUTOSCALER_KIND,
  type AutoscalerSpec,
  autoscalerSpecFromObject,
  FleetSpecError,
  DEFAULT_STRATEGY,
  DRAIN_REQUESTED_ANNOTATION,
  isCurrent,
  jsonLogger,
  MemoryEventRecorder,
  templateHash,
  linkToken,
  parseFleetFileDocuments,
  type FleetFileDocuments,
  type FleetSpec,
  type LogLevel,
  type Store,
} from '@smelter-fleet/core';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { pendingRestRouter, startGateway } from '@smelter-fleet/gateway';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { parseArgs } from 'node:util';
import { parsing, port, UsageError } from './args.js';
import {
  authFlagsGiven,
  DEFAULT_STATE_DIR,
  describeAuth,
  ensureApiToken,
  gatewayTls,
  SERVER_AUTH_OPTIONS,
  serverAuth,
} from './auth-options.js';
import { CommandError } from './client-commands.js';
import { DEFAULT_GATEWAY_PORT } from './gateway-command.js';
import { serveMetrics } from './metrics-server.js';
import { describeRegions, REGION_OPTIONS, regionRouting } from './region-options.js';
import { openStore } from './store-option.js';
import { countsByState, renderStatus, type StatusView } from './table.js';

export interface UpContext {
  /** Fleet file used without -f. */
  defaultFleetFile: string;
  /** $SMELTER_PATH: the Smelter binary; unset means the emulator. */
  smelterPath: string | undefined;
  out: (text: string) => void;
  /** Whether `out` is a terminal (the status table is redrawn in place). */
  tty: boolean;
  /** argv that runs `smelter-fleet supervise` (each server runs under its sidecar). */
  superviseCommand: readonly string[];
  /** Resolves when the process is asked to stop (Ctrl-C, SIGTERM). */
  stopRequested: Promise<string>;
  /** `--store` without the flag: $SMELTER_FLEET_STORE, else memory. */
  defaultStore?: string;
  /** $SMELTER_FLEET_LINK_SECRET, when set: the fleet link secret shared by every process. */
  linkSecret?: string | undefined;
  /** `--state-dir` without the flag ($SMELTER_FLEET_STATE_DIR): where the API token is kept. Default `.smelter-fleet`. */
  defaultStateDir?: string | undefined;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export async function up(argv: string[], ctx: UpContext): Promise<void> {
  const { values } = parsing('up', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        file: { type: 'string', short: 'f' },
        'allocator-port': { type: 'string' },
        'allocator-host': { type: 'string' },
        'gateway-port': { type: 'string' },
        'gateway-host': { type: 'string' },
        'log-level': { type: 'string' },
        'metrics-port': { type: 'string' },
        store: { type: 'string' },
        ...REGION_OPTIONS,
        'state-dir': { type: 'string' },
        ...SERVER_AUTH_OPTIONS,
      },
    }),
  );
  const logLevel = (values['log-level'] ?? 'warn') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`up: --log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const allocatorAddress = `${values['allocator-host'] ?? '127.0.0.1'}:${port('allocator-port', values['allocator-port'], 50051)}`;
  const gatewayHost = values['gateway-host'] ?? '127.0.0.1';
  const gatewayPort = port('gateway-port', values['gateway-port'], DEFAULT_GATEWAY_PORT);
  const file = values.file ?? ctx.defaultFleetFile;
  const { fleets, autoscalers } = await loadFleetFile(file);

  const logger = jsonLogger({ level: logLevel });
  const regions = regionRouting('up', values);
  // Never open by default: without auth flags, callers need the API token kept in the state directory.
  const apiToken = authFlagsGiven(values)
    ? undefined
    : ensureApiToken(values['state-dir'] ?? ctx.defaultStateDir ?? DEFAULT_STATE_DIR);
  const auth = await serverAuth('up', apiToken ? { ...values, 'auth-tokens': apiToken.file } : values, logger);
  // Under TLS the sidecars (no client certificate) link on a plaintext loopback port of their own.
  const linkAddress =
    auth.tls || values['link-port'] !== undefined
      ? `127.0.0.1:${port('link-port', values['link-port'], 0)}`
      : undefined;
  const metricsPort =
    values['metrics-port'] === undefined ? undefined : port('metrics-port', values['metrics-port'], 0);
  const events = new MemoryEventRecorder();
  const metrics = new ControllerMetrics();
  const emulator = [process.execPath, emulatorMainPath];
  const defaultCommand = ctx.smelterPath ? [ctx.smelterPath] : emulator;
  const fleetInfo = (f: FleetSpec): FleetRuntimeInfo => {
    const command = f.template.command.length > 0 ? f.template.command : defaultCommand;
    return { smelterCommand: command.join(' '), emulated: command === emulator };
  };

  // Sidecars authenticate on the fleet link with tokens derived from this secret: per run in memory,
  // shared through Redis (or $SMELTER_FLEET_LINK_SECRET) so any allocator replica accepts them.
  const { store, linkSecret, description } = await openStore('up', values.store ?? ctx.defaultStore ?? 'memory', {
    logger,
    linkSecret: ctx.linkSecret,
  }).catch((err) => {
    auth.close();
    throw err;
  });
  for (const f of fleets) await store.putFleet(f);
  // The control-plane front door: compositions' Smelter APIs, each behind its allocation's token.
  // The REST mirror shares the gateway's listener; it is plugged in once the allocator (its services) runs.
  const rest = pendingRestRouter();
  const gateway = await startGateway({
    store,
    host: gatewayHost,
    port: gatewayPort,
    logger,
    extraRoutes: rest.router,
    ...(auth.tls && { tls: gatewayTls(auth)! }),
  }).catch(async (err: Error) => {
    auth.close();
    await store.close();
    throw new CommandError(`up: gateway cannot listen on ${gatewayHost}:${gatewayPort}: ${err.message}`);
  });
  // Autoscalers write replicas on the stored fleets; the allocator's misses (no Ready server) are their demand.
  const autoscaler = new FleetAutoscaler({
    store,
    autoscalers,
    logger,
    onScale: (a) =>
      ctx.out(`autoscaler ${a.name}: fleet ${a.fleetName} ${a.previousReplicas} -> ${a.desiredReplicas} (${a.reason})`),
  });
  const allocator = await startAllocatorServer({
    // Always the autoscaler's view of the store: `apply` may add an autoscaler later.
    store: autoscaler.allocatorStore(),
    address: allocatorAddress,
    regions,
    gatewayUrl: gateway.url,
    fleetInfo,
    applyHandlers: {
      ...DEFAULT_APPLY_HANDLERS,
      [AUTOSCALER_KIND]: {
        parse: autoscalerSpecFromObject,
        apply: async (object, { dryRun }) => autoscaler.apply(object.value as AutoscalerSpec, { dryRun }),
      },
    },
    linkSecret,
    auth,
    ...(linkAddress !== undefined && { linkAddress }),
    logger,
    events,
  }).catch(async (err: Error) => {
    await gateway.close();
    auth.close();
    await store.close();
    throw new CommandError(`up: cannot listen on ${allocatorAddress}: ${err.message}`);
  });
  rest.serve({
    allocation: allocationService(autoscaler.allocatorStore(), logger, { gatewayUrl: gateway.url }, allocator.regions),
    fleet: fleetService({ store, fleetInfo, logger, events }),
    auth,
    logger,
  });
  const anyHost = /^(0\.0\.0\.0|\[::\]|::)$/.test(allocatorAddress.slice(0, allocatorAddress.lastIndexOf(':')));
  const runtime = new ProcessRuntime({
    defaultCommand,
    logger,
    sidecar: {
      command: [...ctx.superviseCommand, '--log-level', logLevel],
      link:
        allocator.linkAddress !== allocator.address
          ? allocator.linkAddress
          : anyHost
            ? `127.0.0.1:${allocator.port}`
            : allocator.address,
      linkToken: (name) => linkToken(linkSecret, name),
    },
  });
  // However this process ends (a second Ctrl-C, a crash), no server outlives it.
  const killAll = () => runtime.killAll();
  process.once('exit', killAll);
  const controller = new FleetController({ store, runtime, logger, events, metrics });
  const metricsServer =
    metricsPort === undefined
      ? undefined
      : await serveMetrics(metrics.registry, values['allocator-host'] ?? '127.0.0.1', metricsPort).catch(
          async (err: Error) => {
            await allocator.close({ force: true });
            throw new CommandError(`up: cannot serve metrics on port ${metricsPort}: ${err.message}`);
          },
        );
  const stop = new AbortController();

  ctx.out(`smelter-fleet up: allocator listening on ${allocator.address} (gRPC), store ${description}`);
  ctx.out(describeRegions(regions, fleets));
  ctx.out(
    `gateway: ${gateway.url}/v1/compositions/{composition_id}/smelter/... ` +
      "(each allocation's gateway_url; send Authorization: Bearer <its token>)",
  );
  ctx.out(`REST API: ${gateway.url}/v1/allocations, /v1/fleets (OpenAPI at ${gateway.url}/openapi.json)`);
  ctx.out(`callers: ${describeAuth(auth)}`);
  if (apiToken)
    ctx.out(
      `API token: ${apiToken.file} (${apiToken.created ? 'new' : 'kept'}, mode 0600); client commands read it ` +
        'from the same state directory (or give --token-file / $SMELTER_FLEET_TOKEN)',
    );
  if (metricsServer) ctx.out(`metrics: ${metricsServer.url} (Prometheus)`);
  ctx.out(`fleet file ${file}: ${fleets.map((f) => `${f.name} (${f.replicas} servers)`).join(', ')}`);
  for (const a of autoscalers) ctx.out(`autoscaler ${a.name}: ${a.policy.type} policy on fleet ${a.fleetName}`);
  for (const f of fleets) {
    const info = fleetInfo(f);
    ctx.out(
      info.emulated
        ? `fleet ${f.name}: running the Smelter EMULATOR, a test stand-in, not Smelter (set SMELTER_PATH to run Smelter)`
        : `fleet ${f.name}: running ${info.smelterCommand}`,
    );
  }
  ctx.out(
    `try: smelter-fleet allocate --allocator ${allocator.address} --fleet ${fleets[0]!.name} --composition demo\n`,
  );

  const running = controller.run(stop.signal);
  const scaling = autoscaler.run(stop.signal);
  const printing = printStatus(store, fleetInfo, ctx, stop.signal);
  const why = await Promise.race([ctx.stopRequested, running.then(() => 'controller stopped')]);
  ctx.out(`\nstopping (${why}): stopping every server...`);
  stop.abort();
  await running;
  await scaling;
  await printing;
  await allocator.close({ force: true });
  await gateway.close();
  auth.close();
  await metricsServer?.close();
  await store.close();
  process.off('exit', killAll);
  ctx.out('stopped: every server process has exited');
}

/** Fleets and autoscalers (SmelterFleetAutoscaler documents) of a fleet file. */
export async function loadFleetFile(file: string, command = 'up'): Promise<FleetFileDocuments> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CommandError(`${command}: cannot read fleet file ${file}: ${(err as Error).message}`);
  }
  try {
    return parseFleetFileDocuments(text, file);
  } catch (err) {
    if (err instanceof FleetSpecError) throw new CommandError(`${command}: invalid fleet file: ${err.message}`);
    throw err;
  }
}

async function statusFromStore(store: Store, fleetInfo: (f: FleetSpec) => FleetRuntimeInfo): Promise<StatusView> {
  const [fleets, servers] = await Promise.all([store.listFleets(), store.listServers()]);
  servers.sort((a, b) => a.fleet.localeCompare(b.fleet) || a.createdAt - b.createdAt || a.name.localeCompare(b.name));
  const byName = new Map(fleets.map((f) => [f.name, { f, hash: templateHash(f.template) }]));
  const outdated = (s: (typeof servers)[number]) => {
    const fleet = byName.get(s.fleet);
    return fleet !== undefined && !isCurrent(s, fleet.f, fleet.hash);
  };
  return {
    fleets: fleets.map((f) => {
      const serversByState: Record<string, number> = {};
      for (const s of servers) if (s.fleet === f.name) serversByState[s.state] = (serversByState[s.state] ?? 0) + 1;
      const own = servers.filter((s) => s.fleet === f.name);
      const old = own.filter(outdated).length;
      const strategy = f.strategy ?? DEFAULT_STRATEGY;
      const rollout = {
        templateHash: byName.get(f.name)!.hash,
        updated: own.length - old,
        outdated: old,
        strategy: strategy.type,
        maxSurge: String(strategy.rollingUpdate.maxSurge),
        maxUnavailable: String(strategy.rollingUpdate.maxUnavailable),
      };
      return { name: f.name, region: f.region, replicas: f.replicas, ...fleetInfo(f), serversByState, rollout };
    }),
    servers: servers.map((s) => ({
      name: s.name,
      fleet: s.fleet,
      state: s.state,
      address: s.address,
      ports: s.ports,
      composition: s.compositionId ?? '',
      pid: s.pid ?? null,
      reason: s.reason ?? '',
      outdated: outdated(s),
      drainDeadline:
        s.state === 'Draining' && byName.has(s.fleet)
          ? s.stateChangedAt + byName.get(s.fleet)!.f.drain.maxDrainTimeMs
          : null,
      drainRequested: s.annotations[DRAIN_REQUESTED_ANNOTATION] ?? '',
    })),
  };
}

/** The live status table: redrawn in place on a terminal, a summary line per change otherwise. */
async function printStatus(
  store: Store,
  fleetInfo: (f: FleetSpec) => FleetRuntimeInfo,
  ctx: UpContext,
  signal: AbortSignal,
): Promise<void> {
  let drawnLines = 0;
  let last = '';
  const draw = async () => {
    const view = await statusFromStore(store, fleetInfo);
    if (ctx.tty) {
      const text = renderStatus(view);
      if (text === last) return;
      last = text;
      ctx.out(`${drawnLines > 0 ? `\x1b[${drawnLines}A\x1b[0J` : ''}${text}`);
      drawnLines = text.split('\n').length;
    } else {
      const summary = view.fleets
        .map((f) => `${f.name}: ${countsByState(f.serversByState) || 'no servers'}`)
        .join('; ');
      if (summary === last) return;
      last = summary;
      ctx.out(`status ${summary}`);
    }
  };
  await draw();
  let timer: NodeJS.Timeout | undefined;
  for await (const _ of store.watch(signal)) {
    // Coalesce bursts of changes into one redraw.
    timer ??= setTimeout(() => {
      timer = undefined;
      void draw();
    }, 100);
  }
  clearTimeout(timer);
}
