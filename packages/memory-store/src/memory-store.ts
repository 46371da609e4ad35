import {
  applyServerUpdate,
  newServerRecord,
  Channel,
  FleetError,
  holdsComposition,
  isTerminal,
  compareAge,
  compareNodes,
  matchesLabels,
  newToken,
  systemClock,
  transition,
  type Allocation,
  type AllocationRequest,
  type Clock,
  type Scheduling,
  type FleetSpec,
  type NewServer,
  type ServerRecord,
  type ServerUpdate,
  type Store,
  type StoreEvent,
} from '@smelter-fleet/core';

export interface MemoryStoreOptions {
  /** Default: the system clock. */
  clock?: Clock;
}

/**
 * The embedded store: everything in this process's memory. Every method body runs without
 * awaiting, so each call is atomic with respect to every other.
 */
export class MemoryStore implements Store {
  private readonly clock: Clock;
  private readonly fleets = new Map<string, FleetSpec>();
  private readonly servers = new Map<string, ServerRecord>();
  private readonly allocations = new Map<string, Allocation>();
  private readonly watchers = new Set<Channel<StoreEvent>>();
  // Indexes kept by put()/drop(), so allocation never scans the whole fleet:
  // Ready servers by fleet and node, each list sorted by compareAge.
  private readonly readyByFleet = new Map<string, Map<string, ServerRecord[]>>();
  private readonly allocatedByFleetNode = new Map<string, Map<string, number>>();
  private readonly leases = new Map<string, { ttlMs: number; timer: NodeJS.Timeout }>();

  constructor(options: MemoryStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
  }

  async putFleet(fleet: FleetSpec): Promise<void> {
    this.fleets.set(fleet.name, structuredClone(fleet));
    this.emit({ type: 'fleet', fleet: structuredClone(fleet), removed: false });
  }

  async getFleet(name: string): Promise<FleetSpec | undefined> {
    const fleet = this.fleets.get(name);
    return fleet && structuredClone(fleet);
  }

  async listFleets(): Promise<FleetSpec[]> {
    return [...this.fleets.values()].map((f) => structuredClone(f));
  }

  async removeFleet(name: string): Promise<void> {
    const fleet = this.fleets.get(name);
    if (!fleet) throw new FleetError('NOT_FOUND', `fleet "${name}" not found`);
    this.fleets.delete(name);
    this.emit({ type: 'fleet', fleet, removed: true });
  }

  async addServer(server: NewServer): Promise<ServerRecord> {
    if (this.servers.has(server.name)) throw new FleetError('ALREADY_EXISTS', `server "${server.name}" already exists`);
    const record = newServerRecord(server, this.clock.now());
    this.put(record);
    return this.emitServer(record);
  }

  async getServer(name: string): Promise<ServerRecord | undefined> {
    const server = this.servers.get(name);
    return server;
  }

  async listServers(filter: { fleet?: string } = {}): Promise<ServerRecord[]> {
    const out: ServerRecord[] = [];
    for (const s of this.servers.values()) if (!filter.fleet || s.fleet === filter.fleet) out.push(s);
    return out;
  }

  async updateServer(name: string, update: ServerUpdate): Promise<ServerRecord> {
    const server = this.servers.get(name);
    if (!server) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
    if (update.expectedVersion !== undefined && update.expectedVersion !== server.version)
      throw new FleetError(
        'ABORTED',
        `server "${name}" changed (version ${server.version}, expected ${update.expectedVersion})`,
      );
    const next = applyServerUpdate(server, update, this.clock.now());
    this.put(next);
    // A composition on a server that died or is being stopped is over: end its allocation.
    if (isTerminal(next.state) && next.compositionId) this.endAllocation(next.compositionId, name);
    return this.emitServer(next);
  }

  async removeServer(name: string): Promise<void> {
    const server = this.servers.get(name);
    if (!server) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
    if (server.state === 'Allocated')
      throw new FleetError('FAILED_PRECONDITION', `server "${name}" is Allocated to "${server.compositionId}"`);
    this.drop(server);
    this.clearLease(name);
    if (server.compositionId) this.endAllocation(server.compositionId, name);
    this.emit({ type: 'server', server, removed: true });
  }

  async allocate(request: AllocationRequest): Promise<Allocation> {
    const existing = this.allocations.get(request.compositionId);
    if (existing) {
      if (request.fleet && existing.fleet !== request.fleet)
        throw new FleetError(
          'FAILED_PRECONDITION',
          `composition "${request.compositionId}" is already allocated in fleet "${existing.fleet}"`,
        );
      return existing;
    }
    const fleet = request.fleet ? this.fleets.get(request.fleet) : undefined;
    if (request.fleet && !fleet) throw new FleetError('NOT_FOUND', `fleet "${request.fleet}" not found`);

    const fleets = request.fleet ? [request.fleet] : [...this.readyByFleet.keys()];
    const chosen = this.choose(fleets, request.matchLabels, fleet?.scheduling ?? 'Packed');
    if (!chosen)
      throw new FleetError(
        'RESOURCE_EXHAUSTED',
        request.fleet ? `no Ready server in fleet "${request.fleet}"` : 'no Ready server matches match_labels',
      );

    const now = this.clock.now();
    const server: ServerRecord = {
      ...chosen,
      state: 'Allocated',
      compositionId: request.compositionId,
      stateChangedAt: now,
      version: chosen.version + 1,
    };
    const allocation: Allocation = {
      compositionId: request.compositionId,
      serverName: server.name,
      fleet: server.fleet,
      region: server.region,
      address: server.address,
      ports: { ...server.ports },
      token: newToken(),
      allocatedAt: now,
      metadata: { ...request.metadata },
    };
    this.put(server);
    this.allocations.set(allocation.compositionId, freezeAllocation(allocation));
    this.emitServer(server);
    this.emit({ type: 'allocation', allocation: allocation, released: false });
    return allocation;
  }

  async release(compositionId: string): Promise<Allocation> {
    const allocation = this.allocations.get(compositionId);
    if (!allocation) throw new FleetError('NOT_FOUND', `composition "${compositionId}" has no allocation`);
    const server = this.servers.get(allocation.serverName);
    if (server && holdsComposition(server.state) && server.compositionId === compositionId) {
      const to = transition(server.state, 'Release');
      if (to.ok && to.to !== server.state) {
        const next = { ...server, state: to.to, stateChangedAt: this.clock.now(), version: server.version + 1 };
        this.put(next);
        this.emitServer(next);
      }
    }
    this.allocations.delete(compositionId);
    this.emit({ type: 'allocation', allocation: allocation, released: true });
    return allocation;
  }

  async getAllocation(compositionId: string): Promise<Allocation | undefined> {
    const allocation = this.allocations.get(compositionId);
    return allocation && allocation;
  }

  async listAllocations(filter: { fleet?: string } = {}): Promise<Allocation[]> {
    const out: Allocation[] = [];
    for (const a of this.allocations.values()) if (!filter.fleet || a.fleet === filter.fleet) out.push(a);
    return out;
  }

  async renewLease(name: string, ttlMs: number): Promise<void> {
    if (!this.servers.has(name)) throw new FleetError('NOT_FOUND', `server "${name}" not found`);
    const lease = this.leases.get(name);
    if (lease && lease.ttlMs === ttlMs) {
      lease.timer.refresh();
      return;
    }
    this.clearLease(name);
    const timer = setTimeout(() => this.expireLease(name, ttlMs), ttlMs);
    timer.unref();
    this.leases.set(name, { ttlMs, timer });
  }

  watch(signal: AbortSignal): AsyncIterable<StoreEvent> {
    const channel = new Channel<StoreEvent>(signal);
    this.watchers.add(channel);
    signal.addEventListener('abort', () => this.watchers.delete(channel), { once: true });
    return channel;
  }

  async close(): Promise<void> {
    for (const name of [...this.leases.keys()]) this.clearLease(name);
    for (const w of this.watchers) w.close();
    this.watchers.clear();
  }

  /**
   * The same choice as core's selectServer, from the indexes: the preferred node that has a matching Ready
   * server, then its oldest. One pass over the nodes; a node that loses to the best so far is not searched.
   */
  private choose(
    fleets: string[],
    matchLabels: Record<string, string>,
    scheduling: Scheduling,
  ): ServerRecord | undefined {
    const nodes = new Set<string>();
    for (const f of fleets) for (const node of this.readyByFleet.get(f)?.keys() ?? []) nodes.add(node);
    let best: { node: string; allocated: number; server: ServerRecord } | undefined;
    for (const node of nodes) {
      let allocated = 0;
      for (const f of fleets) allocated += this.allocatedByFleetNode.get(f)?.get(node) ?? 0;
      if (best && compareNodes({ node, allocated }, best, scheduling) > 0) continue;
      let server: ServerRecord | undefined;
      for (const f of fleets) {
        const found = this.readyByFleet
          .get(f)
          ?.get(node)
          ?.find((s) => matchesLabels(s, matchLabels));
        if (found && (!server || compareAge(found, server) < 0)) server = found;
      }
      if (server) best = { node, allocated, server };
    }
    return best?.server;
  }

  /** Stores a server record and keeps the indexes in step. */
  private put(server: ServerRecord): void {
    const prev = this.servers.get(server.name);
    if (prev) this.unindex(prev);
    this.servers.set(server.name, freezeServer(server));
    if (server.state === 'Ready') {
      let nodes = this.readyByFleet.get(server.fleet);
      if (!nodes) this.readyByFleet.set(server.fleet, (nodes = new Map()));
      let list = nodes.get(server.node);
      if (!list) nodes.set(server.node, (list = []));
      list.splice(sortedIndex(list, server), 0, server);
    } else if (server.state === 'Allocated') {
      let nodes = this.allocatedByFleetNode.get(server.fleet);
      if (!nodes) this.allocatedByFleetNode.set(server.fleet, (nodes = new Map()));
      nodes.set(server.node, (nodes.get(server.node) ?? 0) + 1);
    }
  }

  private drop(server: ServerRecord): void {
    this.unindex(server);
    this.servers.delete(server.name);
  }

  private unindex(server: ServerRecord): void {
    if (server.state === 'Ready') {
      const nodes = this.readyByFleet.get(server.fleet);
      const list = nodes?.get(server.node);
      if (!list) return;
      list.splice(list.indexOf(server), 1);
      if (list.length === 0) nodes!.delete(server.node);
      if (nodes!.size === 0) this.readyByFleet.delete(server.fleet);
    } else if (server.state === 'Allocated') {
      const nodes = this.allocatedByFleetNode.get(server.fleet);
      const n = (nodes?.get(server.node) ?? 0) - 1;
      if (n > 0) nodes?.set(server.node, n);
      else nodes?.delete(server.node);
    }
  }

  private clearLease(name: string): void {
    clearTimeout(this.leases.get(name)?.timer);
    this.leases.delete(name);
  }

  private expireLease(name: string, ttlMs: number): void {
    this.leases.delete(name);
    const server = this.servers.get(name);
    if (!server || !transition(server.state, 'HealthFailed').ok || server.state === 'Unhealthy') return;
    void this.updateServer(name, { event: 'HealthFailed', reason: `sidecar silent for ${ttlMs} ms (lease expired)` });
  }

  private endAllocation(compositionId: string, serverName: string): void {
    const allocation = this.allocations.get(compositionId);
    if (!allocation || allocation.serverName !== serverName) return;
    this.allocations.delete(compositionId);
    this.emit({ type: 'allocation', allocation: allocation, released: true });
  }

  private emitServer(server: ServerRecord): ServerRecord {
    if (this.watchers.size > 0) this.emit({ type: 'server', server, removed: false });
    return server;
  }

  private emit(event: StoreEvent): void {
    for (const w of this.watchers) w.push(event);
  }
}

// Stored records are frozen and handed out as they are: a listing of 10,000 servers copies nothing.
// Every write builds a new record (or allocation) and freezes it here.
function freezeServer(s: ServerRecord): ServerRecord {
  Object.freeze(s.ports);
  Object.freeze(s.labels);
  Object.freeze(s.annotations);
  return Object.freeze(s);
}

function freezeAllocation(a: Allocation): Allocation {
  Object.freeze(a.ports);
  Object.freeze(a.metadata);
  return Object.freeze(a);
}

/** Where `server` goes in a list sorted by compareAge (binary search). */
function sortedIndex(list: ServerRecord[], server: ServerRecord): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareAge(list[mid]!, server) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
