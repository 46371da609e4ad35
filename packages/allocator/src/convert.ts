import type { Allocation, FleetSpec, ServerRecord, ServerState } from '@smelter-fleet/core';
import { SERVER_STATES } from '@smelter-fleet/core';
import type { allocationV1 } from '@smelter-fleet/proto';
import { fleetV1 } from '@smelter-fleet/proto';

export function durationMs(d: { seconds: number; nanos: number } | undefined): number {
  return d ? d.seconds * 1000 + Math.round(d.nanos / 1e6) : 0;
}

export function toAllocationMessage(a: Allocation): allocationV1.Allocation {
  return {
    compositionId: a.compositionId,
    serverName: a.serverName,
    fleet: a.fleet,
    region: a.region,
    address: a.address,
    ports: { ...a.ports },
    token: a.token,
    allocatedAt: new Date(a.allocatedAt),
    metadata: { ...a.metadata },
  };
}

const STATE_TO_PROTO: Record<ServerState, fleetV1.ServerState> = {
  Starting: fleetV1.ServerState.SERVER_STATE_STARTING,
  Ready: fleetV1.ServerState.SERVER_STATE_READY,
  Allocated: fleetV1.ServerState.SERVER_STATE_ALLOCATED,
  Draining: fleetV1.ServerState.SERVER_STATE_DRAINING,
  Shutdown: fleetV1.ServerState.SERVER_STATE_SHUTDOWN,
  Unhealthy: fleetV1.ServerState.SERVER_STATE_UNHEALTHY,
  Error: fleetV1.ServerState.SERVER_STATE_ERROR,
};

export function stateFromProto(state: fleetV1.ServerState): ServerState | undefined {
  return SERVER_STATES.find((s) => STATE_TO_PROTO[s] === state);
}

export function toServerMessage(s: ServerRecord): fleetV1.Server {
  return {
    name: s.name,
    fleet: s.fleet,
    state: STATE_TO_PROTO[s.state],
    address: s.address,
    ports: { ...s.ports },
    compositionId: s.compositionId ?? '',
    pid: s.pid ?? 0,
    labels: { ...s.labels },
    stateChangedAt: new Date(s.stateChangedAt),
    createdAt: new Date(s.createdAt),
    reason: s.reason ?? '',
  };
}

/** What a fleet's servers run, shown to operators (the emulator must never pass for Smelter). */
export interface FleetRuntimeInfo {
  smelterCommand: string;
  emulated: boolean;
}

export function toFleetMessage(f: FleetSpec, servers: readonly ServerRecord[], info: FleetRuntimeInfo): fleetV1.Fleet {
  const byState: Record<string, number> = {};
  for (const s of servers) byState[s.state] = (byState[s.state] ?? 0) + 1;
  return {
    name: f.name,
    region: f.region,
    replicas: f.replicas,
    scheduling: f.scheduling,
    serversByState: byState,
    smelterCommand: info.smelterCommand,
    emulated: info.emulated,
  };
}
