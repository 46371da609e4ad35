import { randomBytes } from 'node:crypto';
import { startAllocatorServer } from '@smelter-fleet/allocator';
import { checkCompositionId, linkToken, type FleetSpec, type Logger } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { FleetLinkClient } from './link-client.js';
import { startSdkServer, type SdkServer } from './sdk-server.js';
import { Sidecar, type SidecarOptions } from './sidecar.js';

export interface RunSidecarOptions extends SidecarOptions {
  /** The fleet link: an allocator's address and this server's link token. Required unless `local`. */
  link?: { address: string; token: string };
  /**
   * Local development mode (like Agones' `sdk-server --local`): no fleet. An in-process fleet
   * (memory store, the real link service) stands in, and what it would record is logged.
   */
  local?: { fleet: FleetSpec };
  /** SDK ports on loopback. Defaults 9357 (gRPC) and 9358 (HTTP). */
  sdk?: { grpcPort?: number; httpPort?: number; host?: string };
  logger: Logger;
}

export interface RunningSidecar {
  sidecar: Sidecar;
  sdk: SdkServer;
  link: FleetLinkClient;
  /** Resolves when everything has stopped (after `signal` aborts). */
  done: Promise<void>;
}

/** Starts the sidecar: Smelter watch, fleet link and SDK server, until `signal` aborts. */
export async function runSidecar(options: RunSidecarOptions, signal: AbortSignal): Promise<RunningSidecar> {
  const { logger } = options;
  const sidecar = new Sidecar(options);
  const stops: (() => Promise<void>)[] = [];
  let link = options.link;
  let extraRoutes: Parameters<typeof startSdkServer>[0]['extraRoutes'];
  if (options.local) {
    const local = await startLocalFleet(options.serverName, options.local.fleet, logger, signal);
    link = local.link;
    extraRoutes = local.routes;
    stops.push(local.close);
  }
  if (!link) throw new Error('the sidecar needs a fleet link (address and token), or local mode');
  const sdk = await startSdkServer({ sidecar, logger, ...options.sdk, ...(extraRoutes && { extraRoutes }) });
  logger.info('SDK listening', { host: sdk.host, grpcPort: sdk.grpcPort, httpPort: sdk.httpPort });
  const client = new FleetLinkClient({ address: link.address, token: link.token, sidecar, logger });
  const done = Promise.all([sidecar.run(signal), client.run(signal)]).then(async () => {
    await sdk.close();
    for (const stop of stops) await stop();
  });
  return { sidecar, sdk, link: client, done };
}

async function startLocalFleet(serverName: string, fleet: FleetSpec, logger: Logger, signal: AbortSignal) {
  const store = new MemoryStore();
  await store.putFleet(fleet);
  await store.addServer({
    name: serverName,
    fleet: fleet.name,
    region: fleet.region,
    address: '127.0.0.1',
    ports: { api: 0, whip_whep: 0, rtmp: 0 },
    labels: { ...fleet.template.labels },
    node: 'local',
  });
  const secret = randomBytes(32).toString('base64url');
  const allocator = await startAllocatorServer({ store, address: '127.0.0.1:0', linkSecret: secret, logger });
  const log = logger.child({ local: true });
  void (async () => {
    for await (const e of store.watch(signal)) {
      if (e.type === 'server')
        log.info('fleet would record', { server: e.server.name, state: e.server.state, reason: e.server.reason });
      else if (e.type === 'allocation')
        log.info(e.released ? 'fleet would release' : 'fleet would allocate', {
          composition: e.allocation.compositionId,
        });
    }
  })();
  const compositionId = (b: Record<string, unknown>) => {
    const id = typeof b.composition_id === 'string' ? b.composition_id : '';
    checkCompositionId('composition_id', id);
    return id;
  };
  return {
    link: { address: allocator.address, token: linkToken(secret, serverName) },
    /** Stand-ins for the allocator's calls, so a composition can be tried without a fleet. */
    routes: {
      'POST /local/allocate': async (b: Record<string, unknown>) => {
        const metadata = (typeof b.metadata === 'object' && b.metadata !== null ? b.metadata : {}) as Record<
          string,
          string
        >;
        const a = await store.allocate({
          fleet: fleet.name,
          matchLabels: {},
          compositionId: compositionId(b),
          metadata,
        });
        return { composition_id: a.compositionId, server_name: a.serverName, metadata: a.metadata };
      },
      'POST /local/release': async (b: Record<string, unknown>) => {
        await store.release(compositionId(b));
        return {};
      },
    },
    close: async () => {
      await allocator.close({ force: true });
      await store.close();
    },
  };
}
