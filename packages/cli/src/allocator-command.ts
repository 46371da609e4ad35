import { parseArgs } from 'node:util';
import { startAllocatorServer } from '@smelter-fleet/allocator';
import { jsonLogger, type LogLevel } from '@smelter-fleet/core';
import { parsing, port, UsageError } from './args.js';
import { describeAuth, SERVER_AUTH_OPTIONS, serverAuth } from './auth-options.js';
import { CommandError } from './client-commands.js';
import { publicUrl } from './gateway-command.js';
import { describeRegions, REGION_OPTIONS, regionRouting } from './region-options.js';
import { openStore } from './store-option.js';

export interface ScaleOutContext {
  /** `--store` without the flag: $SMELTER_FLEET_STORE, else memory. */
  defaultStore: string;
  /** $SMELTER_FLEET_LINK_SECRET: the fleet link secret, when the operator sets one for every process. */
  linkSecret: string | undefined;
  out: (text: string) => void;
  /** Resolves when the process is asked to stop (Ctrl-C, SIGTERM). */
  stopRequested: Promise<string>;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export function logLevel(command: string, value: string | undefined): LogLevel {
  const level = (value ?? 'warn') as LogLevel;
  if (!LOG_LEVELS.includes(level))
    throw new UsageError(`${command}: --log-level must be one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

/** A shared store is needed by every scale-out process: a private memory store would serve nobody. */
export function sharedStoreValue(command: string, value: string): string {
  if (value === 'memory')
    throw new UsageError(
      `${command}: --store must be a redis:// URL (set --store or SMELTER_FLEET_STORE): ` +
        'replicas share fleet state through Redis; a private memory store would be empty',
    );
  return value;
}

/**
 * `smelter-fleet allocator --store redis://... [--allocator-port 50051]`: one stand-alone allocator replica
 * (AllocationService, FleetService and the sidecars' fleet link) over the shared store. Run several.
 */
export async function allocatorCommand(argv: string[], ctx: ScaleOutContext): Promise<void> {
  const { values } = parsing('allocator', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        store: { type: 'string' },
        'allocator-port': { type: 'string' },
        'allocator-host': { type: 'string' },
        'gateway-url': { type: 'string' },
        'log-level': { type: 'string' },
        ...REGION_OPTIONS,
        ...SERVER_AUTH_OPTIONS,
      },
    }),
  );
  const logger = jsonLogger({ level: logLevel('allocator', values['log-level']) });
  const regions = regionRouting('allocator', values);
  const storeValue = sharedStoreValue('allocator', values.store ?? ctx.defaultStore);
  const auth = await serverAuth('allocator', values, logger);
  const gatewayUrl =
    values['gateway-url'] === undefined ? undefined : publicUrl('allocator', 'gateway-url', values['gateway-url']);
  const host = values['allocator-host'] ?? '127.0.0.1';
  const address = `${host}:${port('allocator-port', values['allocator-port'], 50051)}`;
  // Under TLS the sidecars (no client certificate) link on a plaintext port of their own.
  const linkAddress =
    auth.tls || values['link-port'] !== undefined
      ? `${host}:${port('link-port', values['link-port'], 50052)}`
      : undefined;
  const opened = await openStore('allocator', storeValue, { logger, linkSecret: ctx.linkSecret }).catch((err) => {
    auth.close();
    throw err;
  });
  const allocator = await startAllocatorServer({
    store: opened.store,
    address,
    regions,
    linkSecret: opened.linkSecret,
    ...(gatewayUrl !== undefined && { gatewayUrl }),
    auth,
    ...(linkAddress !== undefined && { linkAddress }),
    logger,
  }).catch(async (err: Error) => {
    auth.close();
    await opened.store.close();
    throw new CommandError(`allocator: cannot listen on ${address}: ${err.message}`);
  });
  ctx.out(`smelter-fleet allocator: listening on ${allocator.address} (gRPC), store ${opened.description}`);
  ctx.out(describeRegions(regions));
  ctx.out(`callers: ${describeAuth(auth)}; sidecar link on ${allocator.linkAddress}`);
  const why = await ctx.stopRequested;
  ctx.out(`stopping (${why})`);
  await allocator.close({ force: true });
  auth.close();
  await opened.store.close();
}
