import type { KubeConfig } from '@kubernetes/client-node';
import { isCurrent, templateHash, type FleetSpec, type ServerRecord } from '@smelter-fleet/core';
import { KubeHttpError, kubeRequest } from './informer.js';

/** The label selector of fleet `name`'s pods (they carry `smelterfleet.dev/fleet: <name>`). */
export function fleetSelector(name: string): string {
  return `smelterfleet.dev/fleet=${name}`;
}

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  /** RFC 3339. */
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** SmelterFleet `status` (deploy/crds). */
export interface SmelterFleetStatus {
  replicas: number;
  readyReplicas: number;
  allocatedReplicas: number;
  drainingReplicas: number;
  updatedReplicas: number;
  observedGeneration?: number;
  /** Label selector of the fleet's pods, for the scale subresource. */
  selector: string;
  conditions: Condition[];
}

export type FleetCounts = Pick<
  SmelterFleetStatus,
  'replicas' | 'readyReplicas' | 'allocatedReplicas' | 'drainingReplicas' | 'updatedReplicas'
>;

/** Counts of a fleet's servers by state; `replicas` is every server not Shutdown. Pure. */
export function fleetCounts(servers: readonly ServerRecord[], fleet: FleetSpec | undefined): FleetCounts {
  const hash = fleet ? templateHash(fleet.template) : undefined;
  const counts: FleetCounts = {
    replicas: 0,
    readyReplicas: 0,
    allocatedReplicas: 0,
    drainingReplicas: 0,
    updatedReplicas: 0,
  };
  for (const s of servers) {
    if (s.state === 'Shutdown') continue;
    counts.replicas++;
    if (s.state === 'Ready') counts.readyReplicas++;
    else if (s.state === 'Allocated') counts.allocatedReplicas++;
    else if (s.state === 'Draining') counts.drainingReplicas++;
    if (fleet && isCurrent(s, fleet, hash)) counts.updatedReplicas++;
  }
  return counts;
}

/**
 * `conditions` with `next` set in place of the one of its type: lastTransitionTime kept when the status is unchanged
 * (as meta.SetStatusCondition). Pure; the input is not modified.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: Omit<Condition, 'lastTransitionTime'>,
  nowMs: number,
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const prev = i >= 0 ? list[i] : undefined;
  const lastTransitionTime =
    prev && prev.status === next.status
      ? prev.lastTransitionTime
      : new Date(nowMs).toISOString().replace(/\.\d+Z$/, 'Z');
  const cond: Condition = { ...next, lastTransitionTime };
  if (i >= 0) list[i] = cond;
  else list.push(cond);
  return list;
}

/**
 * The Available condition of a fleet: True once every desired server is up (Ready, Allocated or Draining); pure.
 */
export function availableCondition(counts: FleetCounts, desired: number): Omit<Condition, 'lastTransitionTime'> {
  const up = counts.readyReplicas + counts.allocatedReplicas + counts.drainingReplicas;
  return up >= desired
    ? { type: 'Available', status: 'True', reason: 'ServersUp', message: `${up} of ${desired} desired servers up` }
    : {
        type: 'Available',
        status: 'False',
        reason: 'ServersStarting',
        message: `${up} of ${desired} desired servers up`,
      };
}

/** Whether two statuses say the same (so no write is needed). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}

interface StatusObject {
  metadata: { name: string; resourceVersion?: string; generation?: number };
  status?: Record<string, unknown>;
}

export interface UpdateStatusOptions {
  /** The object as last seen (an informer's cache): tried first, so a write costs one request when nothing raced. */
  current?: StatusObject;
  /** Attempts on 409 Conflict, each after re-reading the object. Default 5. */
  attempts?: number;
  signal?: AbortSignal;
}

/**
 * Writes an object's `status` through its status subresource with optimistic concurrency: PUT with the
 * resourceVersion read; on 409 Conflict, read again and retry. `mutate` computes the new status from the object as
 * read (undefined: nothing to write). Resolves with the object written, or undefined when nothing was written
 * (no change, or the object is gone).
 */
export async function updateStatus<T extends StatusObject>(
  kubeConfig: KubeConfig,
  /** The object's path, e.g. `/apis/smelterfleet.dev/v1alpha1/namespaces/ns/smelterfleets/x`. */
  path: string,
  mutate: (obj: T) => Record<string, unknown> | undefined,
  options: UpdateStatusOptions = {},
): Promise<T | undefined> {
  const attempts = options.attempts ?? 5;
  let obj = options.current as T | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      obj ??= await kubeRequest<T>(kubeConfig, 'GET', path, { signal: options.signal });
      const status = mutate(obj);
      if (status === undefined || sameStatus(status, obj.status)) return undefined;
      return await kubeRequest<T>(kubeConfig, 'PUT', `${path}/status`, {
        body: { ...obj, status },
        signal: options.signal,
      });
    } catch (err) {
      if (err instanceof KubeHttpError && err.statusCode === 404) return undefined;
      if (!(err instanceof KubeHttpError && err.statusCode === 409) || attempt + 1 >= attempts) throw err;
      obj = undefined; // re-read
    }
  }
}
