import { createHash } from 'node:crypto';
import {
  checkUniqueNames,
  documentHeader,
  duration,
  FleetSpecError,
  int,
  Invalid,
  object,
  oneOf,
  parseDocuments,
  show,
  str,
  type Path,
  stringMap,
} from './spec-parse.js';
import type { Scheduling } from './selection.js';

export { FLEET_API_VERSION, FleetSpecError, parseDurationMs } from './spec-parse.js';

export const FLEET_KIND = 'SmelterFleet';

export interface FleetSpec {
  name: string;
  /** Desired server count (Starting + Ready + Allocated + Draining). */
  replicas: number;
  region: string;
  scheduling: Scheduling;
  template: {
    /** Labels every server carries; allocation selectors match them. */
    labels: Record<string, string>;
    /** Smelter argv. Empty: $SMELTER_PATH, else the Smelter emulator. */
    command: string[];
    env: Record<string, string>;
    /** Kubernetes resources (quantities as strings), carried for pods; the local runtime ignores them. */
    resources?: TemplateResources;
    /** Container image of the pod's Smelter container (Kubernetes only). Absent: the runtime's default image. */
    image?: string;
    /** How servers run as pods (Kubernetes only; the local runtime ignores it). Absent: all defaults. */
    kubernetes?: KubernetesTemplate;
  };
  /** How servers of an older template are replaced. Absent: RollingUpdate, 25% / 25% (as the parser fills). */
  strategy?: FleetStrategy;
  drain: {
    /** What a released server becomes: Recycle (`POST /api/reset`, back to Ready) or Replace. */
    onRelease: 'Recycle' | 'Replace';
    /** Time left to a released server to flush outputs before recycle/stop, ms. */
    flushTimeMs: number;
    /** Longest a server may stay Draining before it is stopped anyway, ms. */
    maxDrainTimeMs: number;
  };
  health: {
    /** A server not healthy this long after launch is Unhealthy, ms. */
    startupTimeoutMs: number;
    /** `GET /status` poll period, ms. */
    periodMs: number;
    /** Consecutive failed polls that make a server Unhealthy. */
    failureThreshold: number;
    /** Smelter: Ready once Smelter answers. SdkReady: also wait for code in the image to call SDK Ready. */
    readiness: 'Smelter' | 'SdkReady';
    /** A server whose sidecar is silent this long is Unhealthy, ms. */
    leaseTimeoutMs: number;
    /** When non-zero, SDK Health pings silent this long (after the first) make the server Unhealthy, ms. */
    sdkHealthTimeoutMs: number;
  };
}

export interface TemplateResources {
  requests: Record<string, string>;
  limits: Record<string, string>;
}

/** How a fleet's servers run as Kubernetes pods (`spec.template.spec.kubernetes`). */
export interface KubernetesTemplate {
  /**
   * Sidecar: the Smelter image as is, plus a `smelter-fleet sidecar` container. Supervisor: one container, a custom
   * image whose entrypoint is `smelter-fleet supervise -- <smelter>`. Default Sidecar.
   */
  mode: 'Sidecar' | 'Supervisor';
  /**
   * Address an allocation returns: the node's ExternalIP (InternalIP when it has none), its InternalIP, or the pod IP.
   * Default PodIP, or ExternalIP with host ports (portPolicy Dynamic or hostNetwork).
   */
  addressType: 'ExternalIP' | 'InternalIP' | 'PodIP';
  /**
   * None: media ports are container ports, reached on the pod IP. Dynamic: whip_whep and rtmp get host ports from the
   * controller's range, distinct per pod on a node (Agones' Dynamic port policy). Default None (Dynamic with hostNetwork).
   */
  portPolicy: 'None' | 'Dynamic';
  /** Run in the node's network namespace (every port from the host port range). Default false. */
  hostNetwork: boolean;
  /** Node labels the pods must match (e.g. GPU nodes). Default none. */
  nodeSelector: Record<string, string>;
}

/** An absolute count, or a percentage such as "25%" of the fleet's warm pool. */
export type IntOrPercent = number | string;

export interface FleetStrategy {
  /**
   * RollingUpdate: new servers first (up to maxSurge extra), old Ready ones retired while at most maxUnavailable
   * of the warm pool is missing. Recreate: old Ready servers stopped at once, new ones launched after.
   * Both drain old Allocated servers: they leave when their composition ends, never before.
   */
  type: 'RollingUpdate' | 'Recreate';
  rollingUpdate: { maxSurge: IntOrPercent; maxUnavailable: IntOrPercent };
}

export const DEFAULT_STRATEGY: FleetStrategy = {
  type: 'RollingUpdate',
  rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' },
};

/** The label each server carries with its template's hash (as Kubernetes' pod-template-hash). */
export const TEMPLATE_HASH_LABEL = 'smelterfleet.dev/template-hash';

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}

/**
 * A stable hash of the server template: the same template gives the same hash whatever the key order,
 * and any change of labels, command, env or resources gives a new one. Replicas, drain and health
 * policies are not part of it: changing them reconfigures servers in place, no rollout.
 */
export function templateHash(template: FleetSpec['template']): string {
  const t = canonical({
    labels: template.labels,
    command: template.command,
    env: template.env,
    resources: template.resources ?? { requests: {}, limits: {} },
    // Only when set, so fleets without them keep the hash they had before these fields existed.
    ...(template.image !== undefined && { image: template.image }),
    ...(template.kubernetes !== undefined && { kubernetes: template.kubernetes }),
  });
  return createHash('sha256').update(JSON.stringify(t)).digest('hex').slice(0, 10);
}

/** Set on a server told to leave (operator drain, outdated template): after its composition it stops, never recycles. */
export const DRAIN_REQUESTED_ANNOTATION = 'smelterfleet.dev/drain-requested';

/**
 * Whether the server runs its fleet's current template (`hash`: the fleet's, when already computed).
 * A server with no template-hash label (registered by hand, not launched by a controller) counts as current.
 */
export function isCurrent(server: { labels: Record<string, string> }, fleet: FleetSpec, hash?: string): boolean {
  const label = server.labels[TEMPLATE_HASH_LABEL];
  return label === undefined || label === (hash ?? templateHash(fleet.template));
}

/**
 * Whether a server whose composition ended goes back to Ready (POST /api/reset) rather than being replaced:
 * only when the fleet says Recycle, it runs the current template and nobody asked it to leave.
 */
export function mayRecycle(
  server: { labels: Record<string, string>; annotations: Record<string, string> },
  fleet: FleetSpec | undefined,
): boolean {
  return (
    fleet !== undefined &&
    fleet.drain.onRelease === 'Recycle' &&
    server.annotations[DRAIN_REQUESTED_ANNOTATION] === undefined &&
    isCurrent(server, fleet)
  );
}

/** Resolves an int-or-percent against `total`: percentages round up (surge) or down (unavailable). */
export function resolveIntOrPercent(value: IntOrPercent, total: number, roundUp: boolean): number {
  if (typeof value === 'number') return value;
  const pct = Number(value.slice(0, -1));
  const exact = (pct * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

const PERCENT = /^(\d{1,3})%$/;
function intOrPercent(v: unknown, path: Path, fallback: IntOrPercent): IntOrPercent {
  if (v === undefined) return fallback;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 10_000) return v;
  const m = typeof v === 'string' ? PERCENT.exec(v) : null;
  if (m && Number(m[1]) <= 100) return v as string;
  throw new Invalid(path, `must be a count (0 or more) or a percentage from 0% to 100% (got ${show(v)})`);
}

// Kubernetes resource quantities: 2, 500m, 4Gi, 1.5...
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$/;
function quantities(v: unknown, path: Path): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new Invalid(path, `must be a mapping (got ${show(v)})`);
  const out: Record<string, string> = {};
  for (const [k, q] of Object.entries(v as Record<string, unknown>)) {
    if (!LABEL_KEY.test(k)) throw new Invalid([...path, k], 'is not a valid resource name');
    const text = typeof q === 'number' ? String(q) : q;
    if (typeof text !== 'string' || !QUANTITY.test(text))
      throw new Invalid([...path, k], `must be a quantity like 2, 500m or 4Gi (got ${show(q)})`);
    out[k] = text;
  }
  return out;
}

function strategyFrom(v: unknown): FleetStrategy {
  const path = ['spec', 'strategy'];
  const strategy = object(v, path, ['type', 'rollingUpdate']);
  const type = oneOf(strategy.type, [...path, 'type'], ['RollingUpdate', 'Recreate'] as const, 'RollingUpdate');
  if (type === 'Recreate' && strategy.rollingUpdate !== undefined)
    throw new Invalid([...path, 'rollingUpdate'], 'only allowed with type RollingUpdate');
  const ru = object(strategy.rollingUpdate, [...path, 'rollingUpdate'], ['maxSurge', 'maxUnavailable']);
  const maxSurge = intOrPercent(ru.maxSurge, [...path, 'rollingUpdate', 'maxSurge'], '25%');
  const maxUnavailable = intOrPercent(ru.maxUnavailable, [...path, 'rollingUpdate', 'maxUnavailable'], '25%');
  const zero = (x: IntOrPercent) => x === 0 || x === '0%';
  if (zero(maxSurge) && zero(maxUnavailable))
    throw new Invalid([...path, 'rollingUpdate', 'maxUnavailable'], 'may not be 0 when maxSurge is 0 too');
  return { type, rollingUpdate: { maxSurge, maxUnavailable } };
}

const IMAGE = /^[^\s]+$/;

function kubernetesFrom(v: unknown): KubernetesTemplate {
  const path = ['spec', 'template', 'spec', 'kubernetes'];
  const k = object(v, path, ['mode', 'addressType', 'portPolicy', 'hostNetwork', 'nodeSelector']);
  if (k.hostNetwork !== undefined && typeof k.hostNetwork !== 'boolean')
    throw new Invalid([...path, 'hostNetwork'], `must be true or false (got ${show(k.hostNetwork)})`);
  const hostNetwork = k.hostNetwork === true;
  const portPolicy = oneOf(
    k.portPolicy,
    [...path, 'portPolicy'],
    ['None', 'Dynamic'] as const,
    hostNetwork ? 'Dynamic' : 'None',
  );
  if (hostNetwork && portPolicy === 'None')
    throw new Invalid(
      [...path, 'portPolicy'],
      'must be Dynamic with hostNetwork (pods on one node need distinct ports)',
    );
  const hostPorts = portPolicy === 'Dynamic';
  const addressType = oneOf(
    k.addressType,
    [...path, 'addressType'],
    ['ExternalIP', 'InternalIP', 'PodIP'] as const,
    hostPorts ? 'ExternalIP' : 'PodIP',
  );
  if (addressType !== 'PodIP' && !hostPorts)
    throw new Invalid(
      [...path, 'addressType'],
      `${addressType} needs portPolicy Dynamic or hostNetwork (container ports are reachable on the pod IP only)`,
    );
  return {
    mode: oneOf(k.mode, [...path, 'mode'], ['Sidecar', 'Supervisor'] as const, 'Sidecar'),
    addressType,
    portPolicy,
    hostNetwork,
    nodeSelector: stringMap(k.nodeSelector, [...path, 'nodeSelector'], LABEL_KEY),
  };
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Validates one fleet document (already parsed to plain data) and fills defaults. */
export function fleetSpecFromObject(doc: unknown): FleetSpec {
  const { name, spec } = documentHeader(doc, FLEET_KIND, [
    'replicas',
    'region',
    'scheduling',
    'strategy',
    'template',
    'drain',
    'health',
  ]);
  const template = object(spec.template, ['spec', 'template'], ['metadata', 'spec']);
  const tmeta = object(template.metadata, ['spec', 'template', 'metadata'], ['labels']);
  const tspec = object(
    template.spec,
    ['spec', 'template', 'spec'],
    ['image', 'command', 'env', 'resources', 'kubernetes'],
  );
  if (tspec.image !== undefined && (typeof tspec.image !== 'string' || !IMAGE.test(tspec.image)))
    throw new Invalid(['spec', 'template', 'spec', 'image'], `must be an image reference (got ${show(tspec.image)})`);
  const kubernetes = tspec.kubernetes === undefined ? undefined : kubernetesFrom(tspec.kubernetes);
  if (kubernetes?.mode === 'Supervisor' && tspec.image === undefined)
    throw new Invalid(
      ['spec', 'template', 'spec', 'image'],
      'is required with mode Supervisor (a custom image whose entrypoint is smelter-fleet supervise)',
    );
  const resources = object(tspec.resources, ['spec', 'template', 'spec', 'resources'], ['requests', 'limits']);
  const command = tspec.command ?? [];
  if (!Array.isArray(command) || !command.every((c) => typeof c === 'string' && c !== ''))
    throw new Invalid(['spec', 'template', 'spec', 'command'], 'must be a list of non-empty strings (argv)');
  const drain = object(spec.drain, ['spec', 'drain'], ['onRelease', 'flushTime', 'maxDrainTime']);
  const health = object(
    spec.health,
    ['spec', 'health'],
    ['startupTimeout', 'period', 'failureThreshold', 'readiness', 'leaseTimeout', 'sdkHealthTimeout'],
  );
  const period = duration(health.period, ['spec', 'health', 'period'], 500, 60_000);
  if (period < 50) throw new Invalid(['spec', 'health', 'period'], 'must be at least 50ms');
  const leaseTimeout = duration(health.leaseTimeout, ['spec', 'health', 'leaseTimeout'], 3000, 600_000);
  if (leaseTimeout < 500) throw new Invalid(['spec', 'health', 'leaseTimeout'], 'must be at least 500ms');
  return {
    name,
    replicas: int(spec.replicas, ['spec', 'replicas'], 3, 0, 10_000),
    region: str(spec.region, ['spec', 'region'], 'local'),
    scheduling: oneOf(spec.scheduling, ['spec', 'scheduling'], ['Packed', 'Distributed'] as const, 'Packed'),
    template: {
      labels: stringMap(tmeta.labels, ['spec', 'template', 'metadata', 'labels'], LABEL_KEY),
      command: command as string[],
      env: stringMap(tspec.env, ['spec', 'template', 'spec', 'env'], ENV_KEY),
      resources: {
        requests: quantities(resources.requests, ['spec', 'template', 'spec', 'resources', 'requests']),
        limits: quantities(resources.limits, ['spec', 'template', 'spec', 'resources', 'limits']),
      },
      ...(tspec.image !== undefined && { image: tspec.image as string }),
      ...(kubernetes !== undefined && { kubernetes }),
    },
    strategy: strategyFrom(spec.strategy),
    drain: {
      onRelease: oneOf(drain.onRelease, ['spec', 'drain', 'onRelease'], ['Recycle', 'Replace'] as const, 'Recycle'),
      flushTimeMs: duration(drain.flushTime, ['spec', 'drain', 'flushTime'], 1000, 3_600_000),
      maxDrainTimeMs: duration(drain.maxDrainTime, ['spec', 'drain', 'maxDrainTime'], 4 * 3_600_000),
    },
    health: {
      startupTimeoutMs: duration(health.startupTimeout, ['spec', 'health', 'startupTimeout'], 60_000),
      periodMs: period,
      failureThreshold: int(health.failureThreshold, ['spec', 'health', 'failureThreshold'], 3, 1, 100),
      readiness: oneOf(health.readiness, ['spec', 'health', 'readiness'], ['Smelter', 'SdkReady'] as const, 'Smelter'),
      leaseTimeoutMs: leaseTimeout,
      sdkHealthTimeoutMs: duration(health.sdkHealthTimeout, ['spec', 'health', 'sdkHealthTimeout'], 0, 3_600_000),
    },
  };
}

/** Parses a fleet file of SmelterFleet documents only. Throws FleetSpecError. */
export function parseFleetFile(text: string, file: string): FleetSpec[] {
  const fleets = parseDocuments(text, file, (doc) => fleetSpecFromObject(doc));
  if (fleets.length === 0) throw new FleetSpecError(file, '', 'no fleet found');
  checkUniqueNames(file, fleets, 'fleet');
  return fleets;
}

/** Validates one document of a kind (already parsed to plain data); throws Invalid naming the field. */
export type KindParser = (doc: unknown) => { name: string };

/** One document of a fleet file, validated by the parser of its kind. */
export interface ManifestObject {
  kind: string;
  name: string;
  /** What the kind's parser returned (for SmelterFleet, a FleetSpec with defaults filled). */
  value: { name: string };
  /** The document as written, so apply can tell a field left out (keep the live value) from a default. */
  raw: unknown;
}

/** The kinds `smelter-fleet apply` and `up` know by default; others (SmelterFleetAutoscaler) are added by callers. */
export const FLEET_PARSERS: Readonly<Record<string, KindParser>> = { [FLEET_KIND]: fleetSpecFromObject };

/**
 * Parses a file of documents of several kinds, each with the parser of its `kind`. Errors name the file,
 * line and field (an unknown kind names `kind`). Throws FleetSpecError.
 */
export function parseManifest(
  text: string,
  file: string,
  parsers: Readonly<Record<string, KindParser>> = FLEET_PARSERS,
): ManifestObject[] {
  const objects = parseDocuments(text, file, (doc): ManifestObject => {
    const kind = (doc as { kind?: unknown } | null)?.kind;
    const parse = typeof kind === 'string' && Object.hasOwn(parsers, kind) ? parsers[kind] : undefined;
    if (!parse) throw new Invalid(['kind'], `must be one of ${Object.keys(parsers).join(', ')} (got ${show(kind)})`);
    const value = parse(doc);
    return { kind: kind as string, name: value.name, value, raw: doc };
  });
  if (objects.length === 0) throw new FleetSpecError(file, '', 'no document found');
  for (const kind of new Set(objects.map((o) => o.kind)))
    checkUniqueNames(
      file,
      objects.filter((o) => o.kind === kind),
      kind,
    );
  return objects;
}
