import {
  FleetError,
  invalidArgument,
  isFleetError,
  REGION_NAME,
  silentLogger,
  type Allocation,
  type AllocationRequest,
  type FleetErrorCode,
  type LatencyTable,
  type Logger,
  type Store,
} from '@smelter-fleet/core';
import { allocationV1 } from '@smelter-fleet/proto';
import {
  ChannelCredentials,
  ClientError,
  createChannel,
  createClient,
  Metadata,
  Status,
  type Channel,
} from 'nice-grpc';
import { allocateWithWait } from './wait.js';

/** Metadata key marking a forwarded call; its value is the origin's region. A marked call is never forwarded again. */
export const FORWARDED_HEADER = 'x-smelter-fleet-forwarded';
export const MAX_PREFERRED_REGIONS = 16;
export const DEFAULT_REGION = 'local';
export const DEFAULT_FORWARD_TIMEOUT_MS = 2000;

export interface RegionPreference {
  /** Ordered regions to try, and the only ones. Empty: every region this allocator knows. */
  regions: readonly string[];
  /** The caller's region: regions are tried nearest first by the latency table. Empty: none given. */
  clientRegion: string;
}

/** Throws INVALID_ARGUMENT naming the first bad field of a region preference. */
export function checkRegionPreference(preference: RegionPreference | undefined): void {
  if (!preference) return;
  if (preference.regions.length > MAX_PREFERRED_REGIONS)
    throw invalidArgument('preference.regions', `at most ${MAX_PREFERRED_REGIONS} regions`);
  const seen = new Set<string>();
  preference.regions.forEach((region, i) => {
    const field = `preference.regions[${i}]`;
    if (!REGION_NAME.test(region))
      throw invalidArgument(field, `"${region.slice(0, 64)}" is not a region name (${REGION_NAME.source})`);
    if (seen.has(region)) throw invalidArgument(field, `"${region}" is listed twice`);
    seen.add(region);
  });
  const client = preference.clientRegion;
  if (client !== '' && !REGION_NAME.test(client))
    throw invalidArgument(
      'preference.client_region',
      `"${client.slice(0, 64)}" is not a region name (${REGION_NAME.source})`,
    );
}

/** Latency between two regions in ms (0 to itself; either direction of the table), undefined when unknown. */
export function latencyBetween(table: LatencyTable, a: string, b: string): number | undefined {
  if (a === b) return 0;
  return table[a]?.[b] ?? table[b]?.[a];
}

export interface RegionOrderInput {
  preference?: RegionPreference | undefined;
  /** This allocator's region. */
  localRegion: string;
  /** Regions this allocator can forward to, in the operator's order. */
  peerRegions: readonly string[];
  latencyMs?: LatencyTable | undefined;
}

/**
 * The regions an Allocate tries, in order:
 * - `regions` listed: exactly those; in list order, or nearest to `client_region` first when that is set too.
 * - only `client_region`: every known region (this one and the peers), nearest to the client first.
 * - neither: this region first, then the peers nearest to this region first.
 * Regions of unknown latency keep their order, after the known ones.
 */
export function orderRegions(input: RegionOrderInput): string[] {
  const listed = input.preference?.regions ?? [];
  const candidates = listed.length > 0 ? [...listed] : [...new Set([input.localRegion, ...input.peerRegions])];
  const from = input.preference?.clientRegion || (listed.length > 0 ? '' : input.localRegion);
  if (!from) return candidates;
  const table = input.latencyMs ?? {};
  return candidates
    .map((region, i) => ({ region, i, ms: latencyBetween(table, from, region) ?? Infinity }))
    .sort((a, b) => (a.ms === b.ms ? a.i - b.i : a.ms - b.ms))
    .map((c) => c.region);
}

export interface RegionRoutingOptions {
  /** This allocator's region. Default 'local' (a fleet's default region). */
  region?: string;
  /** Other regions' allocators, region -> host:port, tried when this one cannot serve. Default none. */
  peers?: Readonly<Record<string, string>>;
  /** Operator's round-trip latencies between regions (ms) for ordering. Default none (list order). */
  latencyMs?: LatencyTable;
  /**
   * Cap on each call to a peer, in ms; the caller's own deadline (its cancellation) ends it sooner.
   * Default 2000.
   */
  forwardTimeoutMs?: number;
  /** Credentials of the channels to peers. Default insecure (loopback and tests only). */
  peerCredentials?: ChannelCredentials;
  /** Metadata added to every call to a peer (e.g. `authorization: Bearer ...`), read per call. Default none. */
  peerMetadata?: () => Readonly<Record<string, string>>;
  /**
   * Before allocating, ask every peer whether the composition is already allocated there (one parallel round
   * trip), so a retry through another region returns the same allocation. Default true.
   */
  lookupBeforeAllocate?: boolean;
  logger?: Logger;
}

/** An allocation served here (to be converted by the caller) or by a peer (its answer, as is). */
export type RoutedAllocation =
  { from: 'local'; allocation: Allocation } | { from: 'peer'; region: string; message: allocationV1.Allocation };

export interface RoutingContext {
  signal: AbortSignal;
  /** The origin's region when the call was forwarded to us (FORWARDED_HEADER): then it is served here only. */
  forwardedFrom?: string | undefined;
}

interface Peer {
  region: string;
  address: string;
  channel: Channel;
  client: allocationV1.AllocationServiceClient;
}

/** What one region answered when it did not serve. */
interface Miss {
  region: string;
  code: FleetErrorCode;
  why: string;
}

// A region answering with one of these is skipped for the next one.
const NEXT_REGION_LOCAL = new Set<FleetErrorCode>([
  'RESOURCE_EXHAUSTED',
  'NOT_FOUND',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
]);
// From a peer, also its failures (a broken or misconfigured region must not block the others; they are logged).
const NEXT_REGION_PEER = new Set<FleetErrorCode>([
  ...NEXT_REGION_LOCAL,
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'INTERNAL',
  'CANCELLED',
]);
// The final error's code: the most telling of what the regions answered.
const CODE_RANK: readonly FleetErrorCode[] = ['RESOURCE_EXHAUSTED', 'NOT_FOUND', 'DEADLINE_EXCEEDED', 'UNAVAILABLE'];

/**
 * Serves Allocate, GetAllocation and Release across regions: this allocator's store for its own region, one-hop
 * forwarding to peer regions' allocators for the others. Without peers it is the local store, unchanged.
 */
export class RegionRouter {
  readonly region: string;
  private readonly peers = new Map<string, Peer>();
  private readonly latencyMs: LatencyTable;
  private readonly forwardTimeoutMs: number;
  private readonly peerMetadata: () => Readonly<Record<string, string>>;
  private readonly lookupBeforeAllocate: boolean;
  private readonly logger: Logger;

  constructor(
    private readonly store: Store,
    options: RegionRoutingOptions = {},
  ) {
    this.region = options.region ?? DEFAULT_REGION;
    this.latencyMs = options.latencyMs ?? {};
    this.forwardTimeoutMs = options.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT_MS;
    this.peerMetadata = options.peerMetadata ?? (() => ({}));
    this.lookupBeforeAllocate = options.lookupBeforeAllocate ?? true;
    this.logger = options.logger ?? silentLogger;
    const credentials = options.peerCredentials ?? ChannelCredentials.createInsecure();
    for (const [region, address] of Object.entries(options.peers ?? {})) {
      if (region === this.region) continue;
      const channel = createChannel(address, credentials);
      this.peers.set(region, {
        region,
        address,
        channel,
        client: createClient(allocationV1.AllocationServiceDefinition, channel),
      });
    }
  }

  /** Peer regions, in the operator's order. */
  get peerRegions(): string[] {
    return [...this.peers.keys()];
  }

  /**
   * Allocates in the first region of the preference's order that can serve: this region from the store (waiting
   * up to `waitMs`), another by forwarding (no wait, one hop). A forwarded call is served here only.
   */
  async allocate(
    request: AllocationRequest,
    waitMs: number,
    preference: RegionPreference | undefined,
    ctx: RoutingContext,
  ): Promise<RoutedAllocation> {
    if (ctx.forwardedFrom !== undefined)
      return { from: 'local', allocation: await allocateWithWait(this.store, request, waitMs, ctx.signal) };
    let order = orderRegions({
      preference,
      localRegion: this.region,
      peerRegions: this.peerRegions,
      latencyMs: this.latencyMs,
    });
    const lookup = this.lookupBeforeAllocate && this.peers.size > 0;
    if (order.length === 1 && order[0] === this.region && !lookup)
      return { from: 'local', allocation: await allocateWithWait(this.store, request, waitMs, ctx.signal) };
    const holder = await this.findHolder(request.compositionId, ctx.signal);
    // Idempotency beats preference: a composition already allocated somewhere is served from there.
    if (holder) order = [holder, ...order.filter((r) => r !== holder)];

    const misses: Miss[] = [];
    let localError: FleetError | undefined;
    for (const region of order) {
      ctx.signal.throwIfAborted();
      if (region === this.region) {
        try {
          return { from: 'local', allocation: await allocateWithWait(this.store, request, waitMs, ctx.signal) };
        } catch (err) {
          if (!isFleetError(err) || !NEXT_REGION_LOCAL.has(err.code)) throw err;
          localError = err;
          misses.push({ region, code: err.code, why: err.message });
          continue;
        }
      }
      const peer = this.peers.get(region);
      if (!peer) {
        misses.push({ region, code: 'UNAVAILABLE', why: 'no allocator known for this region' });
        continue;
      }
      try {
        const forwarded = { ...request, wait: undefined, preference: undefined };
        const { allocation } = await this.call(peer, ctx.signal, (options) => peer.client.allocate(forwarded, options));
        if (!allocation) throw new FleetError('INTERNAL', 'answered without an allocation');
        this.logger.info('allocation forwarded', { composition: request.compositionId, region });
        return { from: 'peer', region, message: allocation };
      } catch (err) {
        const miss = this.miss(region, err, ctx.signal);
        if (!NEXT_REGION_PEER.has(miss.code))
          throw new FleetError(miss.code, `region ${region}: ${miss.why}`, { cause: err });
        misses.push(miss);
      }
    }
    // Only this region was tried: its own error, as without regions.
    if (localError && misses.length === 1) throw localError;
    throw this.walkError(request.compositionId, misses, preference);
  }

  /** The composition's allocation here, else (not forwarded) on the first peer that has it. */
  async getAllocation(compositionId: string, ctx: RoutingContext): Promise<RoutedAllocation> {
    const local = await this.store.getAllocation(compositionId);
    if (local) return { from: 'local', allocation: local };
    const notFound = new FleetError('NOT_FOUND', `composition "${compositionId}" has no allocation`);
    if (ctx.forwardedFrom !== undefined || this.peers.size === 0) throw notFound;
    return this.askPeers(compositionId, ctx.signal, (peer, options) =>
      peer.client.getAllocation({ compositionId }, options),
    );
  }

  /** Releases the composition here, else (not forwarded) on the peer that has it. */
  async release(compositionId: string, ctx: RoutingContext): Promise<RoutedAllocation> {
    try {
      return { from: 'local', allocation: await this.store.release(compositionId) };
    } catch (err) {
      if (!isFleetError(err, 'NOT_FOUND') || ctx.forwardedFrom !== undefined || this.peers.size === 0) throw err;
    }
    return this.askPeers(compositionId, ctx.signal, (peer, options) => peer.client.release({ compositionId }, options));
  }

  close(): void {
    for (const peer of this.peers.values()) peer.channel.close();
  }

  /** Region of the composition's live allocation (here or on a peer), undefined if none is known. */
  private async findHolder(compositionId: string, signal: AbortSignal): Promise<string | undefined> {
    if (await this.store.getAllocation(compositionId)) return this.region;
    if (!this.lookupBeforeAllocate || this.peers.size === 0) return undefined;
    try {
      const found = await this.askPeers(compositionId, signal, (peer, options) =>
        peer.client.getAllocation({ compositionId }, options),
      );
      return found.from === 'peer' ? found.region : undefined;
    } catch (err) {
      signal.throwIfAborted();
      // Not found, or a peer could not say: allocate as usual (an unreachable region's allocation is not seen).
      if (!isFleetError(err, 'NOT_FOUND')) this.logger.debug('composition lookup incomplete', { error: String(err) });
      return undefined;
    }
  }

  /** Asks every peer in parallel; the first that has the composition answers. */
  private async askPeers(
    compositionId: string,
    signal: AbortSignal,
    send: (peer: Peer, options: CallOptions) => Promise<{ allocation?: allocationV1.Allocation | undefined }>,
  ): Promise<RoutedAllocation> {
    const peers = [...this.peers.values()];
    try {
      return await Promise.any(
        peers.map(async (peer): Promise<RoutedAllocation> => {
          const { allocation } = await this.call(peer, signal, (options) => send(peer, options));
          if (!allocation) throw new FleetError('INTERNAL', 'answered without an allocation');
          return { from: 'peer', region: peer.region, message: allocation };
        }),
      );
    } catch (err) {
      signal.throwIfAborted();
      const errors = err instanceof AggregateError ? (err.errors as unknown[]) : [err];
      const misses = errors.map((e, i) => this.miss(peers[i]!.region, e, signal));
      const looked = [this.region, ...misses.filter((m) => m.code === 'NOT_FOUND').map((m) => m.region)];
      const unasked = misses.filter((m) => m.code !== 'NOT_FOUND');
      if (unasked.length === 0)
        throw new FleetError(
          'NOT_FOUND',
          `composition "${compositionId}" has no allocation (looked in regions ${looked.join(', ')})`,
        );
      throw new FleetError(
        'UNAVAILABLE',
        `composition "${compositionId}" is not allocated in ${looked.join(', ')}; could not ask ` +
          unasked.map((m) => `${m.region} (${m.why})`).join(', '),
      );
    }
  }

  /** One call to a peer: marked forwarded, with its metadata, ended by the caller's signal or forwardTimeoutMs. */
  private async call<T>(peer: Peer, signal: AbortSignal, send: (options: CallOptions) => Promise<T>): Promise<T> {
    const metadata = Metadata({ ...this.peerMetadata(), [FORWARDED_HEADER]: this.region });
    const timeout = AbortSignal.timeout(this.forwardTimeoutMs);
    try {
      return await send({ metadata, signal: AbortSignal.any([signal, timeout]) });
    } catch (err) {
      if (timeout.aborted && !signal.aborted)
        throw new FleetError('DEADLINE_EXCEEDED', `no answer within ${this.forwardTimeoutMs} ms`, { cause: err });
      throw err;
    }
  }

  /** What a failed call to a region means; rethrows when the caller itself went away. */
  private miss(region: string, err: unknown, signal: AbortSignal): Miss {
    signal.throwIfAborted();
    if (err instanceof ClientError) {
      const code = (Status[err.code] ?? 'UNAVAILABLE') as FleetErrorCode;
      const known = NEXT_REGION_PEER.has(code) || ['INVALID_ARGUMENT', 'FAILED_PRECONDITION'].includes(code);
      const miss = { region, code: known ? code : 'UNAVAILABLE', why: `${Status[err.code]}: ${err.details}` } as Miss;
      if (code === 'UNAUTHENTICATED' || code === 'PERMISSION_DENIED' || code === 'INTERNAL')
        this.logger.error('peer region refused a forwarded call', { region, code, details: err.details });
      else if (code !== 'RESOURCE_EXHAUSTED' && code !== 'NOT_FOUND')
        this.logger.warn('peer region unavailable', { region, code, details: err.details });
      return miss;
    }
    if (isFleetError(err)) {
      if (err.code === 'DEADLINE_EXCEEDED') this.logger.warn('peer region timed out', { region, error: err.message });
      return { region, code: err.code, why: err.message };
    }
    return { region, code: 'UNAVAILABLE', why: String(err) };
  }

  private walkError(compositionId: string, misses: Miss[], preference: RegionPreference | undefined): FleetError {
    if (preference?.regions.length && misses.every((m) => m.why === 'no allocator known for this region'))
      return invalidArgument(
        'preference.regions',
        `no allocator known for ${misses.map((m) => m.region).join(', ')} ` +
          `(known: ${[this.region, ...this.peerRegions].join(', ')})`,
      );
    const code = CODE_RANK.find((c) => misses.some((m) => m.code === c)) ?? 'UNAVAILABLE';
    return new FleetError(
      code,
      `no region could serve composition "${compositionId}": tried ` +
        misses.map((m) => `${m.region} (${m.why})`).join(', '),
    );
  }
}

interface CallOptions {
  metadata: Metadata;
  signal: AbortSignal;
}
