import { silentLogger, type EventRecorder, type FleetSpec, type Logger, type Store } from '@smelter-fleet/core';
import { allocationV1, fileDescriptorSetBase64, fleetV1, linkV1 } from '@smelter-fleet/proto';
import { createServer, type Server } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import { grpcAuthMiddleware, peerCertificateInterceptor, type CallerAuth } from './auth.js';
import type { FleetRuntimeInfo } from './convert.js';
import { errorMiddleware } from './errors.js';
import { fleetLinkService } from './link-service.js';
import { RegionRouter, type RegionRoutingOptions } from './regions.js';
import { allocationService, fleetService, type ApplyHandler } from './services.js';

export interface AllocatorServerOptions {
  store: Store;
  /** host:port to listen on; port 0 picks a free one. Default '127.0.0.1:0'. */
  address?: string;
  /** What each fleet's servers run, for ListFleets. Default: unknown. */
  fleetInfo?: (fleet: FleetSpec) => FleetRuntimeInfo;
  /** Events FleetService.ListEvents lists (the controller's). Default: none. */
  events?: EventRecorder;
  /** FleetService.ApplyFleet's handlers by document kind. Default: SmelterFleet only (DEFAULT_APPLY_HANDLERS). */
  applyHandlers?: Readonly<Record<string, ApplyHandler>>;
  /** When set, also serves the sidecars' FleetLinkService, checking link tokens with this secret. */
  linkSecret?: string;
  /** This allocator's region, the peer regions' allocators, how Allocate orders them. Default: 'local', no peers. */
  regions?: RegionRoutingOptions;
  /** Base URL of the gateway, for each allocation's `gateway_url`. Default: none (empty `gateway_url`). */
  gatewayUrl?: string;
  /**
   * Caller authentication of AllocationService and FleetService (bearer tokens and/or mTLS; see auth.ts); the
   * link, health and reflection services are not subject to it. Default: none, every caller accepted (the CLI
   * never starts an allocator without one or an explicit --insecure).
   */
  auth?: CallerAuth;
  /**
   * host:port of a separate plaintext listener for the sidecars' FleetLinkService (link tokens authenticate it).
   * Needed when `auth` serves TLS, since sidecars hold no client certificate. Default: the link shares `address`.
   */
  linkAddress?: string;
  logger?: Logger;
}

export interface AllocatorServer {
  /** host:port actually bound. */
  address: string;
  port: number;
  /** host:port sidecars link to: `address`, or the separate link listener's. */
  linkAddress: string;
  health: HealthState;
  /** Region routing of AllocationService: pass it to another allocationService (the REST mirror) to share it. */
  regions: RegionRouter;
  /** Stops accepting calls and waits for running ones; `force` cancels them instead. */
  close(options?: { force?: boolean }): Promise<void>;
}

const SERVICE_NAMES = [allocationV1.AllocationServiceDefinition.fullName, fleetV1.FleetServiceDefinition.fullName];

/** Serves AllocationService and FleetService, plus gRPC health and reflection. */
export async function startAllocatorServer(options: AllocatorServerOptions): Promise<AllocatorServer> {
  const logger = options.logger ?? silentLogger;
  const regions = new RegionRouter(options.store, { logger, ...options.regions });
  // Sidecars keep their link alive with pings; allow them.
  const serverOptions = {
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 1000,
  };
  const auth = options.auth;
  if (auth?.tls && options.linkSecret && options.linkAddress === undefined)
    throw new Error("the allocator serves TLS: the sidecars' link needs its own listener (linkAddress)");
  const server: Server = createServer({
    ...serverOptions,
    ...(auth?.requiresClientCertificate && { interceptors: [peerCertificateInterceptor] }),
  }).use(errorMiddleware(logger));
  const guarded = auth ? server.with(grpcAuthMiddleware(auth, logger)) : server;
  guarded.add(
    allocationV1.AllocationServiceDefinition,
    allocationService(options.store, logger, options.gatewayUrl ? { gatewayUrl: options.gatewayUrl } : {}, regions),
  );
  guarded.add(
    fleetV1.FleetServiceDefinition,
    fleetService({
      store: options.store,
      fleetInfo: options.fleetInfo ?? (() => ({ smelterCommand: '', emulated: false })),
      logger,
      ...(options.events && { events: options.events }),
      ...(options.applyHandlers && { applyHandlers: options.applyHandlers }),
    }),
  );
  const link = options.linkSecret
    ? fleetLinkService({ store: options.store, linkSecret: options.linkSecret, logger })
    : undefined;
  const health = HealthState();
  const linkServer: Server | undefined =
    link && options.linkAddress !== undefined ? createServer(serverOptions).use(errorMiddleware(logger)) : undefined;
  if (link) (linkServer ?? server).add(linkV1.FleetLinkServiceDefinition, link.impl);
  linkServer?.add(HealthDefinition, HealthServiceImpl(health));
  server.add(HealthDefinition, HealthServiceImpl(health));
  const protoset = Uint8Array.from(Buffer.from(fileDescriptorSetBase64, 'base64'));
  server.add(ServerReflectionService, ServerReflection(protoset, [...SERVICE_NAMES, 'grpc.health.v1.Health']));

  const requested = options.address ?? '127.0.0.1:0';
  const port = await server.listen(requested, auth?.serverCredentials());
  const host = requested.slice(0, requested.lastIndexOf(':'));
  let linkAddress = `${host}:${port}`;
  if (linkServer && options.linkAddress !== undefined) {
    const linkPort = await linkServer.listen(options.linkAddress).catch((err: Error) => {
      server.forceShutdown();
      throw err;
    });
    linkAddress = `${options.linkAddress.slice(0, options.linkAddress.lastIndexOf(':'))}:${linkPort}`;
  }
  for (const name of ['', ...SERVICE_NAMES]) health.setStatus('healthy', name);
  return {
    address: `${host}:${port}`,
    port,
    linkAddress,
    health,
    regions,
    async close({ force = false } = {}) {
      for (const name of ['', ...SERVICE_NAMES]) health.setStatus('unhealthy', name);
      link?.close();
      regions.close();
      if (force) {
        server.forceShutdown();
        linkServer?.forceShutdown();
      } else await Promise.all([server.shutdown(), linkServer?.shutdown()]);
    },
  };
}
