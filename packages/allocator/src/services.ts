import {
  checkAllocationRequest,
  checkCompositionId,
  FleetError,
  type FleetSpec,
  type Logger,
  type Store,
} from '@smelter-fleet/core';
import type { allocationV1, fleetV1 } from '@smelter-fleet/proto';
import type { ServiceImplementation } from 'nice-grpc';
import { durationMs, toAllocationMessage, toFleetMessage, toServerMessage, type FleetRuntimeInfo } from './convert.js';
import { allocateWithWait } from './wait.js';

export function allocationService(
  store: Store,
  logger: Logger,
): ServiceImplementation<typeof allocationV1.AllocationServiceDefinition> {
  return {
    async allocate(req, { signal }) {
      const request = {
        fleet: req.fleet,
        matchLabels: req.matchLabels,
        compositionId: req.compositionId,
        metadata: req.metadata,
      };
      const waitMs = durationMs(req.wait);
      if (req.wait && (req.wait.seconds < 0 || req.wait.nanos < 0))
        throw new FleetError('INVALID_ARGUMENT', 'must not be negative', { field: 'wait' });
      checkAllocationRequest(request, waitMs);
      const allocation = await allocateWithWait(store, request, waitMs, signal);
      logger.info('allocated', {
        composition: allocation.compositionId,
        server: allocation.serverName,
        fleet: allocation.fleet,
      });
      return { allocation: toAllocationMessage(allocation) };
    },

    async release(req) {
      checkCompositionId('composition_id', req.compositionId);
      const allocation = await store.release(req.compositionId);
      logger.info('released', { composition: allocation.compositionId, server: allocation.serverName });
      return { allocation: toAllocationMessage(allocation) };
    },

    async getAllocation(req) {
      checkCompositionId('composition_id', req.compositionId);
      const allocation = await store.getAllocation(req.compositionId);
      if (!allocation) throw new FleetError('NOT_FOUND', `composition "${req.compositionId}" has no allocation`);
      return { allocation: toAllocationMessage(allocation) };
    },

    async listAllocations(req) {
      const allocations = await store.listAllocations(req.fleet ? { fleet: req.fleet } : {});
      return { allocations: allocations.map(toAllocationMessage) };
    },
  };
}

export function fleetService(
  store: Store,
  fleetInfo: (fleet: FleetSpec) => FleetRuntimeInfo,
): ServiceImplementation<typeof fleetV1.FleetServiceDefinition> {
  return {
    async listFleets() {
      const [fleets, servers] = await Promise.all([store.listFleets(), store.listServers()]);
      return {
        fleets: fleets.map((f) =>
          toFleetMessage(
            f,
            servers.filter((s) => s.fleet === f.name),
            fleetInfo(f),
          ),
        ),
      };
    },

    async listServers(req) {
      if (req.fleet && !(await store.getFleet(req.fleet)))
        throw new FleetError('NOT_FOUND', `fleet "${req.fleet}" not found`);
      const servers = await store.listServers(req.fleet ? { fleet: req.fleet } : {});
      servers.sort(
        (a, b) => a.fleet.localeCompare(b.fleet) || a.createdAt - b.createdAt || a.name.localeCompare(b.name),
      );
      return { servers: servers.map(toServerMessage) };
    },
  };
}
