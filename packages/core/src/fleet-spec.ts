import {
  checkUniqueNames,
  duration,
  FleetSpecError,
  int,
  Invalid,
  NAME,
  object,
  oneOf,
  parseDocuments,
  show,
  str,
  stringMap,
} from './spec-parse.js';
import type { Scheduling } from './selection.js';

export { FleetSpecError, parseDurationMs } from './spec-parse.js';

export const FLEET_API_VERSION = 'smelterfleet.dev/v1alpha1';
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
  };
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

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Validates one fleet document (already parsed to plain data) and fills defaults. */
export function fleetSpecFromObject(doc: unknown): FleetSpec {
  const top = object(doc, [], ['apiVersion', 'kind', 'metadata', 'spec']);
  if (top.apiVersion !== FLEET_API_VERSION)
    throw new Invalid(['apiVersion'], `must be ${FLEET_API_VERSION} (got ${show(top.apiVersion)})`);
  if (top.kind !== FLEET_KIND) throw new Invalid(['kind'], `must be ${FLEET_KIND} (got ${show(top.kind)})`);
  const metadata = object(top.metadata, ['metadata'], ['name', 'labels']);
  const name = str(metadata.name, ['metadata', 'name']);
  if (!NAME.test(name))
    throw new Invalid(
      ['metadata', 'name'],
      `"${name}" must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)`,
    );
  const spec = object(top.spec, ['spec'], ['replicas', 'region', 'scheduling', 'template', 'drain', 'health']);
  const template = object(spec.template, ['spec', 'template'], ['metadata', 'spec']);
  const tmeta = object(template.metadata, ['spec', 'template', 'metadata'], ['labels']);
  const tspec = object(template.spec, ['spec', 'template', 'spec'], ['command', 'env']);
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
    },
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
