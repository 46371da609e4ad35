import type { FleetSpec } from './fleet-spec.js';
import { FleetError } from './errors.js';
import { transition, type ServerEvent } from './states.js';
import type { Allocation, AllocationRequest, Ports, ServerRecord } from './types.js';

export type NewServer = Omit<ServerRecord, 'state' | 'createdAt' | 'stateChangedAt' | 'version' | 'annotations'> & {
  annotations?: Record<string, string>;
};

export interface ServerUpdate {
  /** Lifecycle event, applied through the transition table; rejected ones throw FAILED_PRECONDITION. */
  event?: ServerEvent;
  pid?: number;
  address?: string;
  ports?: Ports;
  apiHost?: string;
  /** Host the server runs on, once launched (the controller records a server before launching it). */
  node?: string;
  reason?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Fail with ABORTED unless the stored version is this one. */
  expectedVersion?: number;
}

/** One change, delivered to every watcher in the order the store applied it. */
export type StoreEvent =
  | { type: 'server'; server: ServerRecord; removed: boolean }
  | { type: 'fleet'; fleet: FleetSpec; removed: boolean }
  | { type: 'allocation'; allocation: Allocation; released: boolean };

/**
 * Fleet state: fleets, servers, allocations. The memory store is the embedded implementation;
 * every implementation passes the same contract suite (@smelter-fleet/testing).
 */
export interface Store {
  putFleet(fleet: FleetSpec): Promise<void>;
  getFleet(name: string): Promise<FleetSpec | undefined>;
  listFleets(): Promise<FleetSpec[]>;
  /** Removes a fleet record (its servers are the controller's business). NOT_FOUND if absent. */
  removeFleet(name: string): Promise<void>;

  /** Adds a server in state Starting. ALREADY_EXISTS if the name is taken. */
  addServer(server: NewServer): Promise<ServerRecord>;
  getServer(name: string): Promise<ServerRecord | undefined>;
  listServers(filter?: { fleet?: string }): Promise<ServerRecord[]>;
  /** NOT_FOUND, FAILED_PRECONDITION (transition refused) or ABORTED (version moved). */
  updateServer(name: string, update: ServerUpdate): Promise<ServerRecord>;
  /** Removes a server record. FAILED_PRECONDITION while it holds a live allocation. */
  removeServer(name: string): Promise<void>;

  /**
   * Atomically dedicates one Ready server to the composition (Ready -> Allocated).
   * Idempotent: the same composition id gets its existing allocation back.
   * NOT_FOUND for an unknown fleet, RESOURCE_EXHAUSTED when no Ready server matches,
   * FAILED_PRECONDITION when the composition id is allocated in another fleet.
   */
  allocate(request: AllocationRequest): Promise<Allocation>;
  /** Ends an allocation (Allocated -> Draining). NOT_FOUND if there is none. */
  release(compositionId: string): Promise<Allocation>;
  getAllocation(compositionId: string): Promise<Allocation | undefined>;
  listAllocations(filter?: { fleet?: string }): Promise<Allocation[]>;

  /**
   * Renews the server's liveness lease (its sidecar is alive) for `ttlMs` from now. When a lease runs
   * out unrenewed, the store itself marks the server Unhealthy (HealthFailed), with no poller.
   * NOT_FOUND if there is no such server.
   */
  renewLease(name: string, ttlMs: number): Promise<void>;

  /** Change feed from now on; ends when the signal aborts. */
  watch(signal: AbortSignal): AsyncIterable<StoreEvent>;
  close(): Promise<void>;
}

/**
 * The record `update` makes of `server` at `now`: the event through the transition table (FAILED_PRECONDITION
 * when refused), the fields set, the version bumped. Pure; every Store writes what this returns. The caller checks
 * `expectedVersion` and that `server` is current.
 */
export function applyServerUpdate(server: ServerRecord, update: ServerUpdate, now: number): ServerRecord {
  if (update.event === 'Allocate')
    throw new FleetError('FAILED_PRECONDITION', 'servers are allocated through allocate(), not updateServer()');
  const next: ServerRecord = { ...server };
  if (update.event) {
    const result = transition(server.state, update.event);
    if (!result.ok) throw new FleetError('FAILED_PRECONDITION', `server "${server.name}": ${result.reason}`);
    if (result.to !== server.state) {
      next.state = result.to;
      next.stateChangedAt = now;
    }
    if (update.event === 'Recycle') delete next.compositionId;
  }
  if (update.pid !== undefined) next.pid = update.pid;
  if (update.address !== undefined) next.address = update.address;
  if (update.node !== undefined) next.node = update.node;
  if (update.apiHost !== undefined) next.apiHost = update.apiHost;
  if (update.ports !== undefined) next.ports = { ...update.ports };
  if (update.labels !== undefined) next.labels = { ...update.labels };
  if (update.annotations !== undefined) next.annotations = { ...update.annotations };
  if (update.reason !== undefined) next.reason = update.reason;
  next.version = server.version + 1;
  return next;
}

/** The record a Store keeps for a new server: Starting, version 1, created `now`, its maps copied. */
export function newServerRecord(server: NewServer, now: number): ServerRecord {
  return {
    ...server,
    ports: { ...server.ports },
    labels: { ...server.labels },
    annotations: { ...server.annotations },
    state: 'Starting',
    createdAt: now,
    stateChangedAt: now,
    version: 1,
  };
}
