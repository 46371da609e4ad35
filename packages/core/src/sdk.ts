import { invalidArgument } from './errors.js';
import { LABEL_VALUE } from './validation.js';

/** Labels and annotations set through the SDK are stored under this prefix, so they never clash with the fleet's. */
export const SDK_PREFIX = 'sdk.smelterfleet.dev/';
/** The name part of a Kubernetes label key: what follows SDK_PREFIX. */
const KEY_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const MAX_SDK_ENTRIES = 64;
/** Kubernetes caps all annotations of an object at 256 KiB together. */
export const MAX_SDK_ANNOTATION_BYTES = 64 * 1024;

function checkKey(field: string, key: string): void {
  if (!KEY_NAME.test(key))
    throw invalidArgument(
      field,
      `"${key.slice(0, 80)}" must be 1-63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit`,
    );
}

/** INVALID_ARGUMENT unless Kubernetes would accept `SDK_PREFIX + key` = `value` as a label. */
export function checkSdkLabel(key: string, value: string): void {
  checkKey('key', key);
  if (!LABEL_VALUE.test(value))
    throw invalidArgument(
      'value',
      'must be at most 63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit',
    );
}

/** INVALID_ARGUMENT unless Kubernetes would accept `SDK_PREFIX + key` as an annotation key and `value` fits. */
export function checkSdkAnnotation(key: string, value: string): void {
  checkKey('key', key);
  if (Buffer.byteLength(value) > MAX_SDK_ANNOTATION_BYTES)
    throw invalidArgument('value', `must be at most ${MAX_SDK_ANNOTATION_BYTES} bytes`);
}

/** `entries` with `key` set, or INVALID_ARGUMENT when that would pass MAX_SDK_ENTRIES. */
export function withSdkEntry(entries: Record<string, string>, key: string, value: string): Record<string, string> {
  if (!(key in entries) && Object.keys(entries).length >= MAX_SDK_ENTRIES)
    throw invalidArgument(
      'key',
      `at most ${MAX_SDK_ENTRIES} SDK labels (and ${MAX_SDK_ENTRIES} annotations) per server`,
    );
  return { ...entries, [key]: value };
}

/** Fleet labels with the SDK's on top, prefixed. */
export function mergeSdkEntries(base: Record<string, string>, sdk: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith(SDK_PREFIX)) out[k] = v;
  for (const [k, v] of Object.entries(sdk)) out[SDK_PREFIX + k] = v;
  return out;
}

/** Environment variables the sidecar reads, and advertises to Smelter and custom code beside it. */
export const SIDECAR_ENV = {
  /** The server's name. */
  name: 'SMELTER_FLEET_SERVER_NAME',
  /** host:port of the fleet link (an allocator). */
  link: 'SMELTER_FLEET_LINK',
  /** The server's link token (secret; not passed on to Smelter). */
  linkToken: 'SMELTER_FLEET_LINK_TOKEN',
  /** Smelter's API base URL. */
  smelterUrl: 'SMELTER_FLEET_SMELTER_URL',
  /** Where the SDK listens (loopback), for code beside Smelter. */
  sdkHost: 'SMELTER_FLEET_SDK_HOST',
  sdkGrpcPort: 'SMELTER_FLEET_SDK_GRPC_PORT',
  sdkHttpPort: 'SMELTER_FLEET_SDK_HTTP_PORT',
} as const;
