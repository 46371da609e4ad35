import {
  checkAllocationRequest,
  checkCompositionId,
  DRAIN_REQUESTED_ANNOTATION,
  FLEET_KIND,
  FleetError,
  fleetSpecFromObject,
  FleetSpecError,
  isFleetError,
  isTerminal,
  parseManifest,
  templateHash,
  type Allocation,
  type EventRecorder,
  type FleetSpec,
  type KindParser,
  type Logger,
  type ManifestObject,
  type ServerRecord,
  type Store,
} from '@smelter-fleet/core';
import type { allocationV1, fleetV1 } from '@smelter-fleet/proto';
import type { Metadata, ServiceImplementation } from 'nice-grpc';
import {
  durationMs,
  toAllocationMessage as toMessage,
  type AllocationMessageOptions,
  toEventMessage,
  toFleetMessage,
  toServerMessage,
  type FleetRuntimeInfo,
} from './convert.js';
import { checkRegionPreference, FORWARDED_HEADER, RegionRouter, type RoutedAllocation } from './regions.js';

export function allocationService(
  store: Store,
  logger: Logger,
  messageOptions: AllocationMessageOptions = {},
  regions: RegionRouter = new RegionRouter(store),
): ServiceImplementation<typeof allocationV1.AllocationServiceDefinition> {
  const toAllocationMessage = (a: Allocation) => toMessage(a, messageOptions);
  // A peer region's answer is passed on as is (its gateway_url is that region's gateway).
  const routed = (r: RoutedAllocation) => (r.from === 'local' ? toAllocationMessage(r.allocation) : r.message);
  const routing = (signal: AbortSignal, metadata: Metadata) => ({
    signal,
    forwardedFrom: metadata.get(FORWARDED_HEADER),
  });
  return {
    async allocate(req, { signal, metadata }) {
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
      checkRegionPreference(req.preference);
      const allocation = routed(await regions.allocate(request, waitMs, req.preference, routing(signal, metadata)));
      logger.info('allocated', {
        composition: allocation.compositionId,
        server: allocation.serverName,
        fleet: allocation.fleet,
        region: allocation.region,
      });
      return { allocation };
    },

    async release(req, { signal, metadata }) {
      checkCompositionId('composition_id', req.compositionId);
      const allocation = routed(await regions.release(req.compositionId, routing(signal, metadata)));
      logger.info('released', {
        composition: allocation.compositionId,
        server: allocation.serverName,
        region: allocation.region,
      });
      return { allocation };
    },

    async getAllocation(req, { signal, metadata }) {
      checkCompositionId('composition_id', req.compositionId);
      return { allocation: routed(await regions.getAllocation(req.compositionId, routing(signal, metadata))) };
    },

    async listAllocations(req) {
      const allocations = await store.listAllocations(req.fleet ? { fleet: req.fleet } : {});
      return { allocations: allocations.map(toAllocationMessage) };
    },
  };
}

/** How ApplyFleet handles one kind of document. */
export interface ApplyHandler {
  /** Validates one document, throwing core's Invalid naming the field (as fleetSpecFromObject does). */
  parse: KindParser;
  /** Applies one validated document (or, with dryRun, only says what would change). */
  apply(
    object: ManifestObject,
    context: { store: Store; dryRun: boolean },
  ): Promise<{ result: 'created' | 'configured' | 'unchanged'; message: string }>;
}

/**
 * SmelterFleet: creates or replaces the stored FleetSpec; the controller reacts at once (scale, rollout of a
 * new template, new policies). `replicas` left out of the document keeps the live value (an autoscaler's).
 */
export const fleetApplyHandler: ApplyHandler = {
  parse: fleetSpecFromObject,
  async apply(object, { store, dryRun }) {
    const spec = structuredClone(object.value as FleetSpec);
    const current = await store.getFleet(spec.name);
    const raw = object.raw as { spec?: { replicas?: unknown } } | null;
    if (current && raw?.spec?.replicas === undefined) spec.replicas = current.replicas;
    const changes: string[] = [];
    if (current) {
      if (current.replicas !== spec.replicas) changes.push(`replicas ${current.replicas} -> ${spec.replicas}`);
      const [was, now] = [templateHash(current.template), templateHash(spec.template)];
      if (was !== now) changes.push(`template ${was} -> ${now} (${spec.strategy?.type ?? 'RollingUpdate'})`);
      const policy = (f: FleetSpec) => JSON.stringify([f.region, f.scheduling, f.strategy, f.drain, f.health]);
      if (policy(current) !== policy(spec)) changes.push('policy');
    }
    const result = !current ? 'created' : changes.length > 0 ? 'configured' : 'unchanged';
    if (!dryRun && result !== 'unchanged') await store.putFleet(spec);
    return {
      result,
      message: current ? changes.join('; ') : `replicas ${spec.replicas}, template ${templateHash(spec.template)}`,
    };
  },
};

export const DEFAULT_APPLY_HANDLERS: Readonly<Record<string, ApplyHandler>> = { [FLEET_KIND]: fleetApplyHandler };

export interface FleetServiceOptions {
  store: Store;
  /** What each fleet's servers run, for ListFleets. */
  fleetInfo: (fleet: FleetSpec) => FleetRuntimeInfo;
  /** Source of ListEvents. Default: none (no events listed). */
  events?: EventRecorder;
  /** ApplyFleet's handlers by document kind. Default: SmelterFleet only. */
  applyHandlers?: Readonly<Record<string, ApplyHandler>>;
  logger: Logger;
}

export function fleetService(
  options: FleetServiceOptions,
): ServiceImplementation<typeof fleetV1.FleetServiceDefinition> {
  const { store, fleetInfo, logger } = options;
  const handlers = options.applyHandlers ?? DEFAULT_APPLY_HANDLERS;
  const parsers = Object.fromEntries(Object.entries(handlers).map(([kind, h]) => [kind, h.parse]));
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
      const [servers, fleets] = await Promise.all([
        store.listServers(req.fleet ? { fleet: req.fleet } : {}),
        store.listFleets(),
      ]);
      const byName = new Map(fleets.map((f) => [f.name, { f, hash: templateHash(f.template) }]));
      servers.sort(
        (a, b) => a.fleet.localeCompare(b.fleet) || a.createdAt - b.createdAt || a.name.localeCompare(b.name),
      );
      return {
        servers: servers.map((s) => {
          const fleet = byName.get(s.fleet);
          return toServerMessage(s, fleet?.f, fleet?.hash);
        }),
      };
    },

    async applyFleet(req) {
      const file = req.fileName || 'manifest';
      if (!req.manifest.trim()) throw new FleetError('INVALID_ARGUMENT', 'is empty', { field: 'manifest' });
      let objects: ManifestObject[];
      try {
        objects = parseManifest(req.manifest, file, parsers);
      } catch (err) {
        if (err instanceof FleetSpecError) throw new FleetError('INVALID_ARGUMENT', err.message, { field: 'manifest' });
        throw err;
      }
      // Every document is valid before any is applied.
      const applied = [];
      for (const object of objects) {
        const { result, message } = await handlers[object.kind]!.apply(object, { store, dryRun: req.dryRun });
        applied.push({ kind: object.kind, name: object.name, result, message });
        if (!req.dryRun) logger.info('applied', { kind: object.kind, name: object.name, result, changes: message });
      }
      return { objects: applied };
    },

    async drainServers(req) {
      if (req.servers.length === 0 && !req.fleet)
        throw new FleetError('INVALID_ARGUMENT', 'name servers, or a fleet', { field: 'servers' });
      if (req.servers.length > 0 && req.fleet)
        throw new FleetError('INVALID_ARGUMENT', 'name servers or a fleet, not both', { field: 'fleet' });
      req.servers.forEach((name, i) => {
        if (!name) throw new FleetError('INVALID_ARGUMENT', 'must not be empty', { field: `servers[${i}]` });
      });
      let targets: ServerRecord[];
      if (req.fleet) {
        if (!(await store.getFleet(req.fleet))) throw new FleetError('NOT_FOUND', `fleet "${req.fleet}" not found`);
        targets = await store.listServers({ fleet: req.fleet });
      } else {
        targets = [];
        for (const name of req.servers) {
          const s = await store.getServer(name);
          if (!s) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
          targets.push(s);
        }
      }
      const reason = req.reason || 'drained by operator';
      const out = [];
      for (const s of targets) {
        const drained = await drainServer(store, s, reason);
        if (!drained) continue;
        options.events?.record({
          type: 'Normal',
          reason: 'Draining',
          fleet: s.fleet,
          object: `server/${s.name}`,
          message: `${reason}${drained.compositionId && drained.state === 'Draining' ? `; stops when composition ${drained.compositionId} ends` : ''}`,
        });
        logger.info('server drained by operator', { server: s.name, state: drained.state });
        out.push(drained);
      }
      const fleets = new Map((await store.listFleets()).map((f) => [f.name, f]));
      return { servers: out.map((s) => toServerMessage(s, fleets.get(s.fleet))) };
    },

    async listEvents(req) {
      const events = options.events?.list({
        ...(req.fleet && { fleet: req.fleet }),
        ...(req.object && { object: req.object }),
      });
      return { events: (events ?? []).map(toEventMessage) };
    },
  };
}

/**
 * Takes a server out of service: Ready or Allocated -> Draining (marked so it is never recycled), Starting ->
 * Shutdown. Retries on a concurrent change; undefined when it is already gone or stopping.
 */
async function drainServer(store: Store, s: ServerRecord, reason: string): Promise<ServerRecord | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (isTerminal(s.state)) return undefined;
    try {
      const annotations = { ...s.annotations, [DRAIN_REQUESTED_ANNOTATION]: reason };
      if (s.state === 'Starting')
        return await store.updateServer(s.name, { event: 'Shutdown', reason, expectedVersion: s.version });
      return await store.updateServer(s.name, {
        ...(s.state !== 'Draining' && { event: 'Drain' as const }),
        reason,
        annotations,
        expectedVersion: s.version,
      });
    } catch (err) {
      if (isFleetError(err, 'NOT_FOUND')) return undefined;
      if (!isFleetError(err, 'ABORTED') && !isFleetError(err, 'FAILED_PRECONDITION')) throw err;
      const again = await store.getServer(s.name);
      if (!again) return undefined;
      s = again;
    }
  }
  throw new FleetError('ABORTED', `server "${s.name}" keeps changing; try again`);
}
