import { parseArgs } from 'node:util';
import { allocationService, fleetService, RegionRouter, type CallerAuth } from '@smelter-fleet/allocator';
import { jsonLogger } from '@smelter-fleet/core';
import { pendingRestRouter, startGateway } from '@smelter-fleet/gateway';
import { logLevel, type ScaleOutContext } from './allocator-command.js';
import { parsing, port, UsageError } from './args.js';
import { CommandError } from './client-commands.js';
import { openStore } from './store-option.js';
import { authFlagsGiven, describeAuth, gatewayTls, serverAuth } from './auth-options.js';
import { REGION_OPTIONS, regionRouting } from './region-options.js';

/** The gateway's port when `--gateway-port` is not given (`up` and `gateway`). */
export const DEFAULT_GATEWAY_PORT = 8090;

/** `--public-url`: an absolute http(s) URL, without a trailing slash. */
export function publicUrl(command: string, flag: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${command}: --${flag} must be an absolute URL such as https://gateway.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`${command}: --${flag} must be an http:// or https:// URL`);
  if (url.search || url.hash) throw new UsageError(`${command}: --${flag} must not have a query or fragment`);
  return value.replace(/\/+$/, '');
}

/**
 * `smelter-fleet gateway --store redis://... [--gateway-port 8090] [--gateway-host 127.0.0.1] [--public-url U]`:
 * one stand-alone gateway replica routing by the allocations in the shared store. Run several.
 */
export async function gatewayCommand(argv: string[], ctx: ScaleOutContext): Promise<void> {
  const { values } = parsing('gateway', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        store: { type: 'string' },
        'gateway-port': { type: 'string' },
        'gateway-host': { type: 'string' },
        'public-url': { type: 'string' },
        'log-level': { type: 'string' },
        // The REST mirror of the allocation API, served only with caller auth; with --tls-cert/--tls-key the
        // listener is HTTPS, and --client-ca lets REST callers authenticate with client certificates.
        'auth-tokens': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'client-ca': { type: 'string' },
        insecure: { type: 'boolean' },
        ...REGION_OPTIONS,
      },
    }),
  );
  const logger = jsonLogger({ level: logLevel('gateway', values['log-level']) });
  const storeValue = values.store ?? ctx.defaultStore;
  if (storeValue === 'memory')
    throw new UsageError(
      'gateway: --store must be a redis:// URL (set --store or SMELTER_FLEET_STORE): a stand-alone gateway routes ' +
        'by the allocations the allocators write to the shared store; a private memory store holds none, so every ' +
        'request would be refused (`smelter-fleet up` runs a gateway on its own memory store)',
    );
  const host = values['gateway-host'] ?? '127.0.0.1';
  const gatewayPort = port('gateway-port', values['gateway-port'], DEFAULT_GATEWAY_PORT);
  const publicBase =
    values['public-url'] === undefined ? undefined : publicUrl('gateway', 'public-url', values['public-url']);
  // TLS flags alone are refused by serverAuth (no caller auth named), not silently served as plain HTTP.
  const restWanted = authFlagsGiven(values) || values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
  const regions = regionRouting('gateway', values);
  const auth: CallerAuth | undefined = restWanted ? await serverAuth('gateway', values, logger) : undefined;
  const opened = await openStore('gateway', storeValue, { logger, linkSecret: ctx.linkSecret }).catch((err) => {
    auth?.close();
    throw err;
  });
  const rest = pendingRestRouter();
  const gateway = await startGateway({
    store: opened.store,
    host,
    port: gatewayPort,
    logger,
    ...(restWanted && { extraRoutes: rest.router }),
    ...(auth?.tls && { tls: gatewayTls(auth)! }),
  }).catch(async (err: Error) => {
    auth?.close();
    await opened.store.close();
    throw new CommandError(`gateway: cannot listen on ${host}:${gatewayPort}: ${err.message}`);
  });
  const base = publicBase ?? gateway.url;
  const router = auth ? new RegionRouter(opened.store, { logger, ...regions }) : undefined;
  if (auth && router)
    rest.serve({
      allocation: allocationService(opened.store, logger, { gatewayUrl: base }, router),
      // What the servers run is the allocators' knowledge, not the gateway's.
      fleet: fleetService({ store: opened.store, fleetInfo: () => ({ smelterCommand: '', emulated: false }), logger }),
      auth,
      logger,
    });
  ctx.out(`smelter-fleet gateway: listening on ${gateway.url}, store ${opened.description}`);
  ctx.out(
    `compositions at ${base}/v1/compositions/{composition_id}/smelter/... ` +
      `(run allocators with --gateway-url ${base} so allocations carry it)`,
  );
  ctx.out(
    auth
      ? `REST API: ${base}/v1/allocations, /v1/fleets (OpenAPI at ${base}/openapi.json); callers: ${describeAuth(auth)}`
      : 'REST API: off (give --auth-tokens FILE, or --insecure, to serve it)',
  );
  const why = await ctx.stopRequested;
  ctx.out(`stopping (${why})`);
  await gateway.close();
  router?.close();
  auth?.close();
  await opened.store.close();
}
