import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { jsonLogger, parseDurationMs, SIDECAR_ENV, type FleetSpec, type LogLevel } from '@smelter-fleet/core';
import { runSidecar, supervise } from '@smelter-fleet/sidecar';
import { parsing, port, UsageError } from './args.js';

export interface SidecarContext {
  /** The process environment (read by the entry point, passed in). */
  env: NodeJS.ProcessEnv;
  /** Subscribes to SIGTERM / SIGINT. */
  onSignal(handler: (signal: 'SIGTERM' | 'SIGINT') => void): void;
  /** A fleet the local mode stands in for (the example fleet file's first fleet). */
  localFleet: () => Promise<FleetSpec>;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

function duration(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDurationMs(/^\d+$/.test(value) ? Number(value) : value);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${flag} "${value}": expected a duration like 250ms or 2s`);
  return ms;
}

/**
 * `smelter-fleet sidecar [flags]` and `smelter-fleet supervise [flags] -- <smelter command>`.
 * Resolves with the exit code when the sidecar (and Smelter, when supervised) has stopped.
 */
export async function sidecarCommand(
  mode: 'sidecar' | 'supervise',
  argv: string[],
  ctx: SidecarContext,
): Promise<number> {
  const dashes = argv.indexOf('--');
  const flags = dashes >= 0 ? argv.slice(0, dashes) : argv;
  const command = dashes >= 0 ? argv.slice(dashes + 1) : [];
  if (mode === 'supervise' && command.length === 0)
    throw new UsageError('supervise: give the Smelter command after --, e.g. supervise -- /app/main_process');
  if (mode === 'sidecar' && dashes >= 0) throw new UsageError('sidecar: takes no command; use supervise -- <command>');
  const { values } = parsing(mode, () =>
    parseArgs({
      args: flags,
      strict: true,
      allowPositionals: false,
      options: {
        name: { type: 'string' },
        link: { type: 'string' },
        'smelter-url': { type: 'string' },
        'sdk-grpc-port': { type: 'string' },
        'sdk-http-port': { type: 'string' },
        'health-period': { type: 'string' },
        'failure-threshold': { type: 'string' },
        local: { type: 'boolean' },
        'log-level': { type: 'string' },
      },
    }),
  );
  const env = ctx.env;
  const logLevel = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    throw new UsageError(`${mode}: --log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const local = values.local === true;
  const serverName = values.name ?? env[SIDECAR_ENV.name] ?? (local ? `local-${hostname()}` : undefined);
  if (!serverName) throw new UsageError(`${mode}: the server name is required (--name or $${SIDECAR_ENV.name})`);
  const linkAddress = values.link ?? env[SIDECAR_ENV.link];
  const linkToken = env[SIDECAR_ENV.linkToken];
  if (!local && (!linkAddress || !linkToken))
    throw new UsageError(
      `${mode}: the fleet link needs --link (or $${SIDECAR_ENV.link}) and $${SIDECAR_ENV.linkToken}; or run with --local`,
    );
  const threshold = values['failure-threshold'];
  if (threshold !== undefined && !(Number.isInteger(Number(threshold)) && Number(threshold) >= 1))
    throw new UsageError(`--failure-threshold "${threshold}": expected an integer of at least 1`);
  const smelterUrl =
    values['smelter-url'] ?? env[SIDECAR_ENV.smelterUrl] ?? `http://127.0.0.1:${env.SMELTER_API_PORT || '8081'}`;
  try {
    new URL(smelterUrl);
  } catch {
    throw new UsageError(`--smelter-url "${smelterUrl}": not a URL`);
  }

  const logger = jsonLogger({ level: logLevel, fields: { component: 'sidecar', server: serverName } });
  const stop = new AbortController();
  const healthPeriodMs = duration('health-period', values['health-period']);
  const running = await runSidecar(
    {
      serverName,
      smelterUrl,
      ...(healthPeriodMs !== undefined && { healthPeriodMs }),
      ...(threshold !== undefined && { failureThreshold: Number(threshold) }),
      ...(local
        ? { local: { fleet: await ctx.localFleet() } }
        : { link: { address: linkAddress!, token: linkToken! } }),
      sdk: {
        grpcPort: port('sdk-grpc-port', values['sdk-grpc-port'] ?? env[SIDECAR_ENV.sdkGrpcPort], 9357),
        httpPort: port('sdk-http-port', values['sdk-http-port'] ?? env[SIDECAR_ENV.sdkHttpPort], 9358),
        host: env[SIDECAR_ENV.sdkHost] || '127.0.0.1',
      },
      logger,
    },
    stop.signal,
  );
  const { sidecar, sdk } = running;
  if (local)
    logger.info('local mode: no fleet; an in-process fleet stands in (POST /local/allocate on the SDK HTTP port)');

  if (mode === 'sidecar') {
    ctx.onSignal((signal) => {
      if (signal === 'SIGINT') return stop.abort();
      // A stop request: tell the fleet, wait for the composition (Smelter itself is stopped by its own entrypoint).
      sidecar.shutdown('sidecar got SIGTERM');
      void (async () => {
        const ac = new AbortController();
        const limit = setTimeout(() => ac.abort(), sidecar.linkConfig.maxDrainTimeMs);
        if (!sidecar.mayStop()) for await (const _ of sidecar.watchServer(ac.signal)) if (sidecar.mayStop()) break;
        clearTimeout(limit);
        stop.abort();
      })();
    });
    await running.done;
    return 0;
  }

  const childEnv: NodeJS.ProcessEnv = {
    ...env,
    [SIDECAR_ENV.sdkHost]: sdk.host,
    [SIDECAR_ENV.sdkGrpcPort]: String(sdk.grpcPort),
    [SIDECAR_ENV.sdkHttpPort]: String(sdk.httpPort),
  };
  delete childEnv[SIDECAR_ENV.linkToken]; // the link token is the sidecar's alone
  const child = supervise({ command, env: childEnv, sidecar, logger });
  ctx.onSignal((signal) => (signal === 'SIGTERM' ? child.requestStop('SIGTERM') : child.stopNow()));
  const code = await child.exited;
  // Give the fleet a moment to hear that Smelter is gone before the link closes.
  const ack = new AbortController();
  const limit = setTimeout(() => ack.abort(), 1000);
  if (running.link.isConnected)
    for await (const s of sidecar.watchServer(ack.signal))
      if (['Unhealthy', 'Error', 'Shutdown'].includes(s.state)) break;
  clearTimeout(limit);
  stop.abort();
  await running.done;
  return code;
}
