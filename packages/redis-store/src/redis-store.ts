import {
  applyServerUpdate,
  newServerRecord,
  Channel,
  FleetError,
  holdsComposition,
  isTerminal,
  newToken,
  silentLogger,
  systemClock,
  transition,
  type Allocation,
  type AllocationRequest,
  type Clock,
  type FleetSpec,
  type Logger,
  type NewServer,
  type ServerRecord,
  type ServerUpdate,
  type Store,
  type StoreEvent,
} from '@smelter-fleet/core';
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, ReplyError, type RedisOptions } from 'ioredis';
import { parseRedisUrl, type RedisTarget } from './config.js';
import { ALLOCATE, COMMIT, POSITION, PUT_FLEET, RENEW_LEASE, SNAPSHOT } from './lua.js';

export interface RedisStoreOptions {
  /** `redis://`, `rediss://`, `redis+sentinel://` or `redis+cluster://` URL (see parseRedisUrl). Required. */
  url: string;
  /**
   * Installation name: every key is `sf:{<prefix>}:...`, so two installations can share one Redis (and in
   * a Cluster, all of one installation's keys hash to one slot, as the Lua scripts need).
   * Default: the URL's `?prefix=`, else `smelter-fleet`.
   */
  prefix?: string;
  /** Default: the system clock. */
  clock?: Clock;
  logger?: Logger;
  /** A command not answered within this fails with UNAVAILABLE, ms. Default 1000. */
  commandTimeoutMs?: number;
  /** Connecting at start gives up after this, ms. Default 3000. */
  connectTimeoutMs?: number;
  /** Change feed length kept in Redis (approximate MAXLEN), entries. Default 10000. */
  feedMaxLen?: number;
  /**
   * Whether this store marks servers Unhealthy when their lease expires (keyspace notifications).
   * Every replica may: only one replica's compare-and-set wins. Default true.
   */
  watchLeases?: boolean;
}

type ScriptResult = [string, ...string[]];
type Client = Redis | Cluster;
interface Scripts {
  sfAllocate(p: string, ...args: string[]): Promise<ScriptResult>;
  sfCommit(p: string, ...args: string[]): Promise<ScriptResult>;
  sfPutFleet(p: string, ...args: string[]): Promise<ScriptResult>;
  sfRenewLease(p: string, ...args: string[]): Promise<number>;
  sfSnapshot(p: string): Promise<[string, string, string[], string[], string[]]>;
  sfPosition(p: string): Promise<[string, string]>;
}

const BLOCK_MS = 1000;
/** Version conflicts retried before giving up with ABORTED (each one means another writer won). */
const MAX_CAS_ATTEMPTS = 50;

interface Watcher {
  channel: Channel<StoreEvent>;
  /** Feed id this watcher starts after: changes this store made before watch() are not replayed. */
  floor: string;
}

/**
 * Fleet state in Redis, shared by several allocator replicas and the controller.
 *
 * - Allocation is one Lua script: selection (core's selectServer rule, from indexes), Ready -> Allocated,
 *   the allocation record and token, the idempotency key and the change feed entry, atomically.
 * - Every other server change is decided in TypeScript by core's transition table and written by a
 *   compare-and-set script on the record's version (retried on conflict), which also keeps the indexes.
 * - Change feed: a Redis Stream appended in the same scripts, so it is ordered exactly as the writes and
 *   can be read from a position. Every entry carries a sequence number; a reader that sees a gap (entries
 *   trimmed by MAXLEN, a Redis restart without persistence) or that lost its connection re-emits the
 *   current state (a resync) before going on. Consumers are level-triggered, so this is enough.
 *   Pub/sub was not chosen: it drops messages silently while a subscriber is away.
 * - Leases: `lease:<server>` keys with PX expiry. Redis' `expired` keyspace notification makes every
 *   replica try the HealthFailed transition; the compare-and-set lets one win. Leases that expired while
 *   no replica listened are found when the subscription (re)connects.
 * - Redis down: no offline queue and a command timeout, so calls fail at once with UNAVAILABLE; the
 *   connections reconnect by themselves and the feed resyncs.
 */
export class RedisStore implements Store {
  private readonly p: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly maxLen: string;
  private readonly watchers = new Set<Watcher>();
  private lastSeq = 0;
  private lastId = '0-0';
  private lastWrittenId = '0-0';
  private needResync = false;
  private closed = false;
  private reading: Promise<void> = Promise.resolve();
  private readonly stopReading = new AbortController();

  private constructor(
    private readonly redis: Client & Scripts,
    private readonly reader: Client,
    private readonly sub: Client | undefined,
    options: RedisStoreOptions,
    prefix: string,
    private readonly db: number,
  ) {
    this.p = `sf:{${prefix}}:`;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.maxLen = String(options.feedMaxLen ?? 10_000);
  }

  /** Connects (failing with UNAVAILABLE if Redis cannot be reached in time) and starts the feed reader. */
  static async connect(options: RedisStoreOptions): Promise<RedisStore> {
    const parsed = parseRedisUrl(options.url);
    const prefix = options.prefix ?? parsed.prefix ?? 'smelter-fleet';
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(prefix))
      throw new FleetError('INVALID_ARGUMENT', `"${prefix}" must be 1-64 letters, digits, '.', '_' or '-'`, {
        field: 'prefix',
      });
    const commandTimeout = options.commandTimeoutMs ?? 1000;
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      connectTimeout: options.connectTimeoutMs ?? 3000,
      // Reconnect for ever, at most a second apart: the store recovers by itself when Redis is back.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    };
    const make = (extra: RedisOptions) => client(parsed.target, { ...base, ...extra });
    const redis = make({}) as Client & Scripts;
    // The feed reader blocks up to BLOCK_MS per read, so its timeout is longer.
    const reader = make({ commandTimeout: commandTimeout + BLOCK_MS });
    const sub = options.watchLeases === false ? undefined : make({ commandTimeout: undefined });
    const all = [redis, reader, ...(sub ? [sub] : [])];
    try {
      await Promise.all(all.map((c) => c.connect()));
    } catch (err) {
      all.forEach((c) => c.disconnect());
      throw new FleetError('UNAVAILABLE', `cannot connect to Redis at ${parsed.redacted}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    redis.defineCommand('sfAllocate', { numberOfKeys: 1, lua: ALLOCATE });
    redis.defineCommand('sfCommit', { numberOfKeys: 1, lua: COMMIT });
    redis.defineCommand('sfPutFleet', { numberOfKeys: 1, lua: PUT_FLEET });
    redis.defineCommand('sfRenewLease', { numberOfKeys: 1, lua: RENEW_LEASE });
    redis.defineCommand('sfSnapshot', { numberOfKeys: 1, lua: SNAPSHOT });
    redis.defineCommand('sfPosition', { numberOfKeys: 1, lua: POSITION });
    const db = parsed.target.kind === 'cluster' ? 0 : (parsed.target.options.db ?? 0);
    const store = new RedisStore(redis, reader, sub, options, prefix, db);
    try {
      const [seq, id] = await store.redis.sfPosition(store.p);
      store.lastSeq = Number(seq);
      store.lastId = id;
      if (sub) await store.watchLeases(sub);
    } catch (err) {
      all.forEach((c) => c.disconnect());
      throw unavailable(err);
    }
    store.reading = store.readLoop();
    return store;
  }

  // ---- fleets

  async putFleet(fleet: FleetSpec): Promise<void> {
    const r = await this.script(() =>
      this.redis.sfPutFleet(this.p, this.maxLen, fleet.name, JSON.stringify(fleet), fleet.scheduling),
    );
    this.wrote(r[1]);
  }

  async getFleet(name: string): Promise<FleetSpec | undefined> {
    const raw = await this.call(() => this.redis.hget(this.p + 'fleets', name));
    return raw === null ? undefined : (JSON.parse(raw) as FleetSpec);
  }

  async listFleets(): Promise<FleetSpec[]> {
    const raws = await this.call(() => this.redis.hvals(this.p + 'fleets'));
    return raws.map((r) => JSON.parse(r) as FleetSpec);
  }

  async removeFleet(name: string): Promise<void> {
    const r = await this.script(() => this.redis.sfPutFleet(this.p, this.maxLen, name, '', ''));
    if (r[0] === 'NOT_FOUND') throw new FleetError('NOT_FOUND', `fleet "${name}" not found`);
    this.wrote(r[1]);
  }

  // ---- servers

  async addServer(server: NewServer): Promise<ServerRecord> {
    const record = newServerRecord(server, this.clock.now());
    const r = await this.commit(record.name, 'new', JSON.stringify(record));
    if (r[0] === 'ALREADY_EXISTS') throw new FleetError('ALREADY_EXISTS', `server "${server.name}" already exists`);
    return record;
  }

  async getServer(name: string): Promise<ServerRecord | undefined> {
    const raw = await this.call(() => this.redis.hget(this.p + 'servers', name));
    return raw === null ? undefined : (JSON.parse(raw) as ServerRecord);
  }

  async listServers(filter: { fleet?: string } = {}): Promise<ServerRecord[]> {
    const raws = await this.call(() => this.redis.hvals(this.p + 'servers'));
    const all = raws.map((r) => JSON.parse(r) as ServerRecord);
    return filter.fleet ? all.filter((s) => s.fleet === filter.fleet) : all;
  }

  async updateServer(name: string, update: ServerUpdate): Promise<ServerRecord> {
    for (let attempt = 1; ; attempt++) {
      const server = await this.getServer(name);
      if (!server) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
      if (update.expectedVersion !== undefined && update.expectedVersion !== server.version)
        throw new FleetError(
          'ABORTED',
          `server "${name}" changed (version ${server.version}, expected ${update.expectedVersion})`,
        );
      const next = applyServerUpdate(server, update, this.clock.now());
      const ends = isTerminal(next.state) && next.compositionId ? next.compositionId : '';
      const r = await this.commit(name, String(server.version), JSON.stringify(next), ends ? 'end' : '', ends);
      if (r[0] === 'OK') return next;
      if (r[0] === 'NOT_FOUND') throw new FleetError('NOT_FOUND', `server "${name}" not found`);
      this.conflict(name, attempt, update.expectedVersion !== undefined);
    }
  }

  async removeServer(name: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const server = await this.getServer(name);
      if (!server) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
      if (server.state === 'Allocated')
        throw new FleetError('FAILED_PRECONDITION', `server "${name}" is Allocated to "${server.compositionId}"`);
      const comp = server.compositionId ?? '';
      const r = await this.commit(name, String(server.version), '', comp ? 'end' : '', comp);
      if (r[0] === 'OK') return;
      if (r[0] === 'NOT_FOUND') throw new FleetError('NOT_FOUND', `server "${name}" not found`);
      this.conflict(name, attempt, false);
    }
  }

  // ---- allocations

  async allocate(request: AllocationRequest): Promise<Allocation> {
    const r = await this.script(() =>
      this.redis.sfAllocate(
        this.p,
        this.maxLen,
        request.fleet,
        request.compositionId,
        JSON.stringify(request.matchLabels),
        JSON.stringify(request.metadata),
        newToken(),
        String(this.clock.now()),
      ),
    );
    switch (r[0]) {
      case 'OK':
        if (r[2]) this.wrote(r[2]);
        return JSON.parse(r[1]!) as Allocation;
      case 'FAILED_PRECONDITION':
        throw new FleetError(
          'FAILED_PRECONDITION',
          `composition "${request.compositionId}" is already allocated in fleet "${r[1]}"`,
        );
      case 'NOT_FOUND':
        throw new FleetError('NOT_FOUND', `fleet "${request.fleet}" not found`);
      case 'RESOURCE_EXHAUSTED':
        throw new FleetError(
          'RESOURCE_EXHAUSTED',
          request.fleet ? `no Ready server in fleet "${request.fleet}"` : 'no Ready server matches match_labels',
        );
      default:
        throw new FleetError('INTERNAL', `allocate script answered ${r[0]}`);
    }
  }

  async release(compositionId: string): Promise<Allocation> {
    for (let attempt = 1; ; attempt++) {
      const allocation = await this.getAllocation(compositionId);
      if (!allocation) throw new FleetError('NOT_FOUND', `composition "${compositionId}" has no allocation`);
      const server = await this.getServer(allocation.serverName);
      let r: ScriptResult;
      const to = server && transition(server.state, 'Release');
      if (
        server &&
        holdsComposition(server.state) &&
        server.compositionId === compositionId &&
        to?.ok &&
        to.to !== server.state
      ) {
        const next = { ...server, state: to.to, stateChangedAt: this.clock.now(), version: server.version + 1 };
        r = await this.commit(
          server.name,
          String(server.version),
          JSON.stringify(next),
          'release',
          compositionId,
          server.name,
        );
      } else {
        r = await this.commit(allocation.serverName, '*', '', 'release', compositionId, allocation.serverName);
      }
      if (r[0] === 'OK') return allocation;
      if (r[0] === 'GONE') throw new FleetError('NOT_FOUND', `composition "${compositionId}" has no allocation`);
      this.conflict(compositionId, attempt, false);
    }
  }

  async getAllocation(compositionId: string): Promise<Allocation | undefined> {
    const raw = await this.call(() => this.redis.hget(this.p + 'allocs', compositionId));
    return raw === null ? undefined : (JSON.parse(raw) as Allocation);
  }

  async listAllocations(filter: { fleet?: string } = {}): Promise<Allocation[]> {
    const raws = await this.call(() => this.redis.hvals(this.p + 'allocs'));
    const all = raws.map((r) => JSON.parse(r) as Allocation);
    return filter.fleet ? all.filter((a) => a.fleet === filter.fleet) : all;
  }

  // ---- leases

  async renewLease(name: string, ttlMs: number): Promise<void> {
    const ttl = Math.max(1, Math.round(ttlMs));
    const found = await this.call(() => this.redis.sfRenewLease(this.p, this.maxLen, name, String(ttl)));
    if (found !== 1) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
  }

  private async watchLeases(sub: Client): Promise<void> {
    const leasePrefix = this.p + 'lease:';
    sub.on('message', (_channel: string, key: string) => {
      if (key.startsWith(leasePrefix)) void this.expireLease(key.slice(leasePrefix.length));
    });
    // On every reconnection: notifications on again (a restarted Redis forgets CONFIG SET), then the
    // leases that ran out while nobody listened.
    sub.on('ready', () => void this.leasesResubscribed());
    await this.enableNotifications();
    await sub.subscribe(`__keyevent@${this.db}__:expired`);
    await this.sweepLeases();
  }

  /** Expiry events need `notify-keyspace-events` with E and x: set them unless CONFIG is refused (managed Redis). */
  private async enableNotifications(): Promise<void> {
    try {
      const [, flags = ''] = (await this.redis.config('GET', 'notify-keyspace-events')) as string[];
      if (flags.includes('E') && (flags.includes('x') || flags.includes('A'))) return;
      await this.redis.config('SET', 'notify-keyspace-events', [...new Set(`${flags}Ex`)].join(''));
    } catch (err) {
      if (!(err instanceof ReplyError)) throw err; // connection trouble: the caller retries
      this.logger.warn('cannot enable keyspace notifications: set notify-keyspace-events Ex in redis.conf', {
        error: String(err),
      });
    }
  }

  private async leasesResubscribed(): Promise<void> {
    // The command connection may come back after the subscriber: retry until both are up.
    for (let attempt = 0; attempt < 30 && !this.closed; attempt++) {
      try {
        await this.enableNotifications();
        await this.sweepLeases();
        return;
      } catch {
        await this.reconnected(this.redis);
      }
    }
  }

  /** Expires every lease whose key is gone. */
  private async sweepLeases(): Promise<void> {
    const leased = await this.redis.hkeys(this.p + 'leased');
    if (leased.length === 0) return;
    const exists = await this.redis.pipeline(leased.map((n) => ['exists', this.p + 'lease:' + n])).exec();
    await Promise.all(leased.map((name, i) => (exists?.[i]?.[1] === 0 ? this.expireLease(name) : undefined)));
  }

  /** Tries the HealthFailed transition for an expired lease; logs `lease expiry handled` with whether it won. */
  private async expireLease(name: string): Promise<void> {
    let outcome = 'gave up';
    try {
      for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
        const [server, ttl] = await Promise.all([this.getServer(name), this.redis.hget(this.p + 'leased', name)]);
        if (!server) {
          outcome = 'no server';
          break;
        }
        if (server.state === 'Unhealthy' || !transition(server.state, 'HealthFailed').ok) {
          await this.redis.hdel(this.p + 'leased', name);
          outcome = `already ${server.state}`;
          break;
        }
        const next = applyServerUpdate(
          server,
          { event: 'HealthFailed', reason: `sidecar silent for ${ttl ?? '?'} ms (lease expired)` },
          this.clock.now(),
        );
        const ends = isTerminal(next.state) && next.compositionId ? next.compositionId : '';
        const r = await this.commit(
          name,
          String(server.version),
          JSON.stringify(next),
          ends ? 'end' : '',
          ends,
          '',
          '1',
        );
        // Every replica gets the expiry; only one compare-and-set wins, the others see CONFLICT and re-read.
        outcome = r[0];
        if (r[0] === 'OK') this.logger.warn('lease expired: server unhealthy', { server: name });
        if (r[0] !== 'CONFLICT') break;
      }
    } catch (err) {
      // The next sweep (on reconnection) tries again.
      outcome = 'failed';
      if (!this.closed) this.logger.warn('cannot expire lease', { server: name, error: String(err) });
    }
    this.logger.debug('lease expiry handled', { server: name, won: outcome === 'OK', outcome });
  }

  /**
   * A secret shared by every process of the installation (e.g. the fleet link's): the first caller
   * generates it (SET NX), every later one reads the same value.
   */
  async sharedSecret(name: string): Promise<string> {
    const key = `${this.p}secret:${name}`;
    return this.call(async () => {
      await this.redis.set(key, randomBytes(32).toString('base64url'), 'NX');
      const value = await this.redis.get(key);
      if (value === null) throw new Error(`secret ${name} vanished`);
      return value;
    });
  }

  // ---- change feed

  watch(signal: AbortSignal): AsyncIterable<StoreEvent> {
    const channel = new Channel<StoreEvent>(signal);
    if (this.closed) {
      channel.close();
      return channel;
    }
    const watcher = { channel, floor: maxId(this.lastWrittenId, this.lastId) };
    this.watchers.add(watcher);
    signal.addEventListener('abort', () => this.watchers.delete(watcher), { once: true });
    return channel;
  }

  private async readLoop(): Promise<void> {
    const key = this.p + 'feed';
    while (!this.closed) {
      try {
        if (this.needResync) await this.resync();
        const res = (await this.reader.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', key, this.lastId)) as
          [string, [string, string[]][]][] | null;
        for (const [id, fields] of res?.[0]?.[1] ?? []) {
          const entry = fieldMap(fields);
          if (Number(entry.n) !== this.lastSeq + 1) {
            this.logger.info('change feed gap: resync', { after: this.lastSeq, got: entry.n });
            this.needResync = true;
            break;
          }
          this.lastSeq += 1;
          this.lastId = id;
          if (this.watchers.size === 0) continue; // position kept, nothing to decode
          const event = decodeEvent(entry);
          for (const w of this.watchers) if (compareIds(id, w.floor) > 0) w.channel.push(event);
        }
      } catch (err) {
        if (this.closed) return;
        this.needResync = true;
        this.logger.debug('change feed read failed', { error: String(err) });
        await this.reconnected(this.reader);
      }
    }
  }

  /** Re-emits the current state to every watcher and continues from the matching feed position. */
  private async resync(): Promise<void> {
    const [seq, id, fleets, servers, allocations] = await this.redis.sfSnapshot(this.p);
    this.lastSeq = Number(seq);
    this.lastId = id;
    this.needResync = false;
    const events: StoreEvent[] = [
      ...fleets.map((f): StoreEvent => ({ type: 'fleet', fleet: JSON.parse(f) as FleetSpec, removed: false })),
      ...servers.map((s): StoreEvent => ({ type: 'server', server: JSON.parse(s) as ServerRecord, removed: false })),
      ...allocations.map((a): StoreEvent => ({
        type: 'allocation',
        allocation: JSON.parse(a) as Allocation,
        released: false,
      })),
    ];
    for (const w of this.watchers) for (const e of events) w.channel.push(e);
  }

  /** Resolves when `c` is ready again (or after a second, or on close). */
  private reconnected(c: Client): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        c.off('ready', done);
        this.stopReading.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, 1000);
      c.once('ready', done);
      this.stopReading.signal.addEventListener('abort', done, { once: true });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopReading.abort();
    for (const w of this.watchers) w.channel.close();
    this.watchers.clear();
    for (const c of [this.reader, ...(this.sub ? [this.sub] : []), this.redis]) c.disconnect();
    await this.reading;
  }

  // ---- plumbing

  private commit(
    name: string,
    expected: string,
    record: string,
    op: '' | 'end' | 'release' = '',
    compositionId = '',
    allocationServer = '',
    requireNoLease = '0',
  ): Promise<ScriptResult> {
    return this.script(() =>
      this.redis.sfCommit(
        this.p,
        this.maxLen,
        name,
        expected,
        record,
        op,
        compositionId,
        allocationServer,
        requireNoLease,
      ),
    ).then((r) => {
      if (r[0] === 'OK' && r[1]) this.wrote(r[1]);
      return r;
    });
  }

  private conflict(what: string, attempt: number, caller: boolean): void {
    if (caller) throw new FleetError('ABORTED', `server "${what}" changed (version moved)`);
    if (attempt >= MAX_CAS_ATTEMPTS)
      throw new FleetError('ABORTED', `"${what}" kept changing: gave up after ${attempt} attempts`);
  }

  private wrote(id: string | undefined): void {
    if (id) this.lastWrittenId = maxId(this.lastWrittenId, id);
  }

  private script(f: () => Promise<ScriptResult>): Promise<ScriptResult> {
    return this.call(f);
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    if (this.closed) throw new FleetError('UNAVAILABLE', 'the Redis store is closed');
    try {
      return await f();
    } catch (err) {
      throw unavailable(err);
    }
  }
}

function client(target: RedisTarget, options: RedisOptions): Client {
  if (target.kind === 'cluster')
    return new Cluster(target.nodes, {
      ...target.options,
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: options.retryStrategy,
      redisOptions: { ...options, ...target.options.redisOptions, lazyConnect: undefined },
    });
  return new Redis({ ...target.options, ...options });
}

/** Every Redis failure (connection refused, timeout, script error) is UNAVAILABLE to the caller. */
function unavailable(err: unknown): FleetError {
  if (err instanceof FleetError) return err;
  return new FleetError('UNAVAILABLE', `Redis: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

function fieldMap(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

function decodeEvent(e: Record<string, string>): StoreEvent {
  const flag = e.f === '1';
  const data = JSON.parse(e.d ?? 'null') as unknown;
  if (e.t === 'server') return { type: 'server', server: data as ServerRecord, removed: flag };
  if (e.t === 'fleet') return { type: 'fleet', fleet: data as FleetSpec, removed: flag };
  return { type: 'allocation', allocation: data as Allocation, released: flag };
}

/** Orders stream ids `<ms>-<seq>`. */
export function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}

const maxId = (a: string, b: string) => (compareIds(a, b) >= 0 ? a : b);
