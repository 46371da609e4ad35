import { readFileSync, statSync } from 'node:fs';
import { ChannelCredentials } from 'nice-grpc';
import { firstToken, type RegionRoutingOptions } from '@smelter-fleet/allocator';
import {
  FleetError,
  FleetSpecError,
  parseDurationMs,
  parseLatencyTable,
  REGION_NAME,
  type LatencyTable,
} from '@smelter-fleet/core';
import { UsageError } from './args.js';

/** A failure printed as is (exit code 1), like a CommandError (which this module cannot import: a cycle). */
const failed = (message: string) => new FleetError('FAILED_PRECONDITION', message);

/** Flags of the processes that serve the allocator (`up`, `allocator`): this region and its peers. */
export const REGION_OPTIONS = {
  region: { type: 'string' },
  peer: { type: 'string', multiple: true },
  'latency-table': { type: 'string' },
  'forward-timeout': { type: 'string' },
  'peer-token-file': { type: 'string' },
  'peer-ca': { type: 'string' },
  'peer-cert': { type: 'string' },
  'peer-key': { type: 'string' },
} as const;

export interface RegionValues {
  region?: string | undefined;
  peer?: string[] | undefined;
  'latency-table'?: string | undefined;
  'forward-timeout'?: string | undefined;
  'peer-token-file'?: string | undefined;
  'peer-ca'?: string | undefined;
  'peer-cert'?: string | undefined;
  'peer-key'?: string | undefined;
}

function regionName(command: string, flag: string, value: string): string {
  if (!REGION_NAME.test(value))
    throw new UsageError(`${command}: --${flag} "${value}": not a region name (${REGION_NAME.source})`);
  return value;
}

function readFile(command: string, flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw failed(`${command}: --${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The bearer token of a token file, re-read when the file changes (rotation without restart). */
function tokenFileReader(command: string, path: string): () => string {
  let seen: { mtimeMs: number; size: number; token: string } | undefined;
  const read = (): string => {
    const s = statSync(path);
    if (seen && seen.mtimeMs === s.mtimeMs && seen.size === s.size) return seen.token;
    const token = firstToken(readFileSync(path, 'utf8'));
    if (token === undefined) throw new Error('no token in it');
    seen = { mtimeMs: s.mtimeMs, size: s.size, token };
    return token;
  };
  try {
    read();
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw failed(`${command}: --peer-token-file ${path}: ${why}`);
  }
  return () => {
    try {
      return read();
    } catch {
      return seen?.token ?? ''; // a file mid-rewrite: keep the last good token
    }
  };
}

/** Routing options the flags describe (validated, files read); errors name the flag, or the file and field. */
export function regionRouting(command: string, v: RegionValues): RegionRoutingOptions {
  const options: RegionRoutingOptions = {};
  const region = v.region === undefined ? undefined : regionName(command, 'region', v.region);
  if (region !== undefined) options.region = region;
  const peers: Record<string, string> = {};
  for (const value of v.peer ?? []) {
    const eq = value.indexOf('=');
    const address = value.slice(eq + 1);
    if (eq <= 0 || !/^.+:\d{1,5}$/.test(address))
      throw new UsageError(`${command}: --peer "${value}": expected region=host:port`);
    const name = regionName(command, 'peer', value.slice(0, eq));
    if (name === (region ?? 'local'))
      throw new UsageError(`${command}: --peer "${value}": that is this allocator's own region`);
    if (peers[name] !== undefined) throw new UsageError(`${command}: --peer: region "${name}" given twice`);
    peers[name] = address;
  }
  if (Object.keys(peers).length > 0) options.peers = peers;
  if (v['latency-table'] !== undefined) options.latencyMs = latencyTable(command, v['latency-table']);
  if (v['forward-timeout'] !== undefined) {
    const ms = parseDurationMs(v['forward-timeout']);
    if (ms === undefined || ms <= 0)
      throw new UsageError(`${command}: --forward-timeout "${v['forward-timeout']}": expected a duration like 2s`);
    options.forwardTimeoutMs = ms;
  }
  if (v['peer-token-file'] !== undefined) {
    const token = tokenFileReader(command, v['peer-token-file']);
    options.peerMetadata = () => ({ authorization: `Bearer ${token()}` });
  }
  if ((v['peer-cert'] === undefined) !== (v['peer-key'] === undefined))
    throw new UsageError(`${command}: --peer-cert and --peer-key go together (the client certificate for peers)`);
  if (v['peer-ca'] !== undefined || v['peer-cert'] !== undefined) {
    const pem = (flag: 'peer-ca' | 'peer-cert' | 'peer-key') => {
      const path = v[flag];
      return path === undefined ? null : readFile(command, flag, path);
    };
    options.peerCredentials = ChannelCredentials.createSsl(pem('peer-ca'), pem('peer-key'), pem('peer-cert'));
  }
  return options;
}

export function latencyTable(command: string, file: string): LatencyTable {
  const text = readFile(command, 'latency-table', file).toString('utf8');
  try {
    return parseLatencyTable(text, file);
  } catch (err) {
    if (err instanceof FleetSpecError) throw failed(`${command}: --latency-table ${err.message}`);
    throw err;
  }
}

/** Startup output: this region, where it forwards, and fleets declaring another region (their answers say so). */
export function describeRegions(
  options: RegionRoutingOptions,
  fleets: { name: string; region: string }[] = [],
): string {
  const region = options.region ?? 'local';
  const peers = Object.entries(options.peers ?? {});
  const others = fleets.filter((f) => f.region !== region);
  return [
    `region ${region}` +
      (peers.length > 0 ? `; forwards to ${peers.map(([r, a]) => `${r} (${a})`).join(', ')}` : '; no peer regions'),
    ...others.map((f) => `warning: fleet ${f.name} declares region ${f.region}, but this allocator serves ${region}`),
  ].join('\n');
}

/** Flags of `allocate`: where to allocate. */
export const PREFERENCE_OPTIONS = {
  'region-preference': { type: 'string' },
  'client-region': { type: 'string' },
} as const;

/** AllocateRequest.preference from --region-preference a,b and --client-region x (the allocator validates them). */
export function regionPreference(v: {
  'region-preference'?: string | undefined;
  'client-region'?: string | undefined;
}): { preference?: { regions: string[]; clientRegion: string } } {
  if (v['region-preference'] === undefined && v['client-region'] === undefined) return {};
  const regions = (v['region-preference'] ?? '')
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');
  return { preference: { regions, clientRegion: v['client-region'] ?? '' } };
}
