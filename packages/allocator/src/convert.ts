import type { Allocation, FleetEvent, FleetSpec, Ports, ServerRecord, ServerState } from '@smelter-fleet/core';
import {
  DEFAULT_STRATEGY,
  DRAIN_REQUESTED_ANNOTATION,
  isCurrent,
  SERVER_STATES,
  TEMPLATE_HASH_LABEL,
  templateHash,
} from '@smelter-fleet/core';
import type { allocationV1 } from '@smelter-fleet/proto';
import { fleetV1 } from '@smelter-fleet/proto';

export function durationMs(d: { seconds: number; nanos: number } | undefined): number {
  return d ? d.seconds * 1000 + Math.round(d.nanos / 1e6) : 0;
}

export interface AllocationMessageOptions {
  /** Base URL of the gateway (e.g. `http://127.0.0.1:8090`); `gateway_url` stays empty without one. */
  gatewayUrl?: string;
}

/** `<base>/v1/compositions/<id>/smelter`: the composition's Smelter API through the gateway. */
export function compositionGatewayUrl(base: string, compositionId: string): string {
  return `${base.replace(/\/+$/, '')}/v1/compositions/${encodeURIComponent(compositionId)}/smelter`;
}

export function toAllocationMessage(a: Allocation, options: AllocationMessageOptions = {}): allocationV1.Allocation {
  return {
    gatewayUrl: options.gatewayUrl ? compositionGatewayUrl(options.gatewayUrl, a.compositionId) : '',
    compositionId: a.compositionId,
    serverName: a.serverName,
    fleet: a.fleet,
    region: a.region,
    address: a.address,
    ports: { ...a.ports },
    token: a.token,
    allocatedAt: new Date(a.allocatedAt),
    metadata: { ...a.metadata },
    media: mediaEndpoints(a.address, a.ports),
  };
}

/** Media URL templates on a server's direct address; a template is empty when its port is unknown (0). */
export function mediaEndpoints(address: string, ports: Partial<Ports>): allocationV1.MediaEndpoints {
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  const at = (scheme: string, port: number | undefined, path: string) =>
    address && port ? `${scheme}://${host}:${port}${path}` : '';
  return {
    whipUrlTemplate: at('http', ports.whip_whep, '/whip/{input_id}'),
    whepUrlTemplate: at('http', ports.whip_whep, '/whep/{output_id}'),
    rtmpUrlTemplate: at('rtmp', ports.rtmp, '/{input_id}/{stream_key}'),
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

/** `fleet` (the server's, when known) adds the rollout and drain fields. */
export function toServerMessage(s: ServerRecord, fleet?: FleetSpec, hash?: string): fleetV1.Server {
  return {
    templateHash: s.labels[TEMPLATE_HASH_LABEL] ?? '',
    outdated: fleet ? !isCurrent(s, fleet, hash) : false,
    drainDeadline:
      fleet && s.state === 'Draining' ? new Date(s.stateChangedAt + fleet.drain.maxDrainTimeMs) : undefined,
    drainRequested: s.annotations[DRAIN_REQUESTED_ANNOTATION] ?? '',
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
  const hash = templateHash(f.template);
  const outdated = servers.filter((s) => !isCurrent(s, f, hash)).length;
  const strategy = f.strategy ?? DEFAULT_STRATEGY;
  const rolling = strategy.type === 'RollingUpdate';
  return {
    templateHash: hash,
    updatedServers: servers.length - outdated,
    outdatedServers: outdated,
    strategy: strategy.type,
    maxSurge: rolling ? String(strategy.rollingUpdate.maxSurge) : '',
    maxUnavailable: rolling ? String(strategy.rollingUpdate.maxUnavailable) : '',
    maxDrainTime: {
      seconds: Math.floor(f.drain.maxDrainTimeMs / 1000),
      nanos: (f.drain.maxDrainTimeMs % 1000) * 1e6,
    },
    name: f.name,
    region: f.region,
    replicas: f.replicas,
    scheduling: f.scheduling,
    serversByState: byState,
    smelterCommand: info.smelterCommand,
    emulated: info.emulated,
  };
}

export function toEventMessage(e: FleetEvent): fleetV1.Event {
  return {
    type: e.type,
    reason: e.reason,
    object: e.object,
    fleet: e.fleet,
    message: e.message,
    firstTime: new Date(e.firstTime),
    lastTime: new Date(e.lastTime),
    count: e.count,
  };
}
