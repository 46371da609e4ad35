import { silentLogger, type EventRecorder, type FleetSpec, type Logger, type Store } from '@smelter-fleet/core';
import { allocationV1, fileDescriptorSetBase64, fleetV1, linkV1 } from '@smelter-fleet/proto';
import { createServer, type Server } from 'nice-grpc';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import type { FleetRuntimeInfo } from './convert.js';
import { errorMiddleware } from './errors.js';
import { fleetLinkService } from './link-service.js';
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
  /** Base URL of the gateway, for each allocation's `gateway_url`. Default: none (empty `gateway_url`). */
  gatewayUrl?: string;
  logger?: Logger;
}

export interface AllocatorServer {
  /** host:port actually bound. */
  address: string;
  port: number;
  health: HealthState;
  /** Stops accepting calls and waits for running ones; `force` cancels them instead. */
  close(options?: { force?: boolean }): Promise<void>;
}

const SERVICE_NAMES = [allocationV1.AllocationServiceDefinition.fullName, fleetV1.FleetServiceDefinition.fullName];

/** Serves AllocationService and FleetService, plus gRPC health and reflection. */
export async function startAllocatorServer(options: AllocatorServerOptions): Promise<AllocatorServer> {
  const logger = options.logger ?? silentLogger;
  // Sidecars keep their link alive with pings; allow them.
  const server: Server = createServer({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 1000,
  }).use(errorMiddleware(logger));
  server.add(
    allocationV1.AllocationServiceDefinition,
    allocationService(options.store, logger, options.gatewayUrl ? { gatewayUrl: options.gatewayUrl } : {}),
  );
  server.add(
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
  if (link) server.add(linkV1.FleetLinkServiceDefinition, link.impl);
  const health = HealthState();
  server.add(HealthDefinition, HealthServiceImpl(health));
  const protoset = Uint8Array.from(Buffer.from(fileDescriptorSetBase64, 'base64'));
  server.add(ServerReflectionService, ServerReflection(protoset, [...SERVICE_NAMES, 'grpc.health.v1.Health']));

  const requested = options.address ?? '127.0.0.1:0';
  const port = await server.listen(requested);
  const host = requested.slice(0, requested.lastIndexOf(':'));
  for (const name of ['', ...SERVICE_NAMES]) health.setStatus('healthy', name);
  return {
    address: `${host}:${port}`,
    port,
    health,
    async close({ force = false } = {}) {
      for (const name of ['', ...SERVICE_NAMES]) health.setStatus('unhealthy', name);
      link?.close();
      if (force) server.forceShutdown();
      else await server.shutdown();
    },
  };
}
