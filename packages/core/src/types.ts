import type { ServerState } from './states.js';

/** Port names an allocation hands out. */
export const PORT_NAMES = ['api', 'whip_whep', 'rtmp'] as const;
export type PortName = (typeof PORT_NAMES)[number];
export type Ports = Record<PortName, number>;

export interface ServerRecord {
  /** Unique name, `<fleet>-<suffix>`. */
  name: string;
  fleet: string;
  region: string;
  state: ServerState;
  /** Direct address for media. */
  address: string;
  ports: Ports;
  /**
   * Host where Smelter's API port answers for the gateway, when it is not `address` (a Kubernetes pod whose media
   * address is its node's: the API port is never a host port, so it answers on the pod IP only).
   */
  apiHost?: string;
  labels: Record<string, string>;
  /** Free-form notes (SDK annotations land here). */
  annotations: Record<string, string>;
  /** Host the server runs on (for Packed/Distributed scheduling). */
  node: string;
  /** Composition it holds while Allocated, and while Draining after it. */
  compositionId?: string;
  /** Local process id, for the process runtime. */
  pid?: number;
  /** Why the server is in its state, when there is something to say. */
  reason?: string;
  /** Epoch milliseconds. */
  createdAt: number;
  /** Epoch milliseconds. */
  stateChangedAt: number;
  /** Bumped on every write; used for optimistic concurrency. */
  version: number;
}

export interface Allocation {
  compositionId: string;
  serverName: string;
  fleet: string;
  region: string;
  address: string;
  ports: Ports;
  /** Per-allocation secret. Never log it. */
  token: string;
  /** Epoch milliseconds. */
  allocatedAt: number;
  metadata: Record<string, string>;
}

export interface AllocationRequest {
  /** Fleet name; may be empty when `matchLabels` selects. */
  fleet: string;
  matchLabels: Record<string, string>;
  compositionId: string;
  metadata: Record<string, string>;
}
