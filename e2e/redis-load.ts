// Shared by the Redis e2e tests: allocator replicas as real processes, a fleet of store-only servers
// (no Smelter processes: these tests are about the store), a recycler, and a load of clients that
// records its history for the checker.
import { connectAllocator, type AllocatorClients } from '@smelter-fleet/allocator';
import { parseFleetFile, systemClock, type Store } from '@smelter-fleet/core';
import type { HistoryRecorder } from '@smelter-fleet/testing';
import { ClientError, Status } from 'nice-grpc';
import { allocatorAuth, apiToken, start, type Running } from './helpers.js';

export interface Replica {
  process: Running;
  address: string;
  clients: AllocatorClients;
}

/** Starts `n` `smelter-fleet allocator` processes on free ports against the store at `url`. */
export async function startReplicas(url: string, n: number): Promise<Replica[]> {
  const started = Array.from({ length: n }, () =>
    start(['allocator', '--store', url, '--allocator-port', '0', ...allocatorAuth]),
  );
  return Promise.all(
    started.map(async (process) => {
      const address = (await process.waitFor(/listening on (\S+)/)).match[1]!;
      return { process, address, clients: connectAllocator(address, { token: apiToken }) };
    }),
  );
}

export async function stopReplicas(replicas: Replica[]): Promise<void> {
  for (const r of replicas) {
    r.clients.close();
    if (r.process.child.exitCode === null && r.process.child.signalCode === null) r.process.child.kill('SIGKILL');
    await r.process.exited;
  }
}

/** Puts fleet `load` with `servers` Ready servers spread over `nodes` nodes, registered without processes. */
export async function seedFleet(store: Store, servers: number, nodes: number): Promise<void> {
  const [fleet] = parseFleetFile(
    `apiVersion: smelterfleet.dev/v1alpha1\nkind: SmelterFleet\nmetadata: {name: load}\nspec: {replicas: ${servers}}`,
    'load',
  );
  await store.putFleet(fleet!);
  await Promise.all(
    Array.from({ length: servers }, async (_, i) => {
      const name = `load-${String(i).padStart(4, '0')}`;
      await store.addServer({
        name,
        fleet: 'load',
        region: 'local',
        address: '127.0.0.1',
        ports: { api: 10000 + i, whip_whep: 20000 + i, rtmp: 30000 + i },
        labels: {},
        node: `node-${i % nodes}`,
      });
      await store.updateServer(name, { event: 'Healthy' });
    }),
  );
}

/**
 * Recycles every Draining server back to Ready through the store (the sidecar's and controller's job,
 * done here as soon as the feed shows it), so the pool does not run dry. Level-triggered: a feed resync
 * re-shows servers left Draining while Redis was away.
 */
export function startRecycler(store: Store, signal: AbortSignal): Promise<void> {
  const busy = new Set<string>();
  return (async () => {
    for await (const e of store.watch(signal)) {
      if (e.type !== 'server' || e.removed || e.server.state !== 'Draining' || busy.has(e.server.name)) continue;
      const name = e.server.name;
      busy.add(name);
      void store
        .updateServer(name, { event: 'Recycle', expectedVersion: e.server.version })
        .catch(() => undefined) // moved on, or Redis away: the next event or resync shows it again
        .finally(() => busy.delete(name));
    }
  })();
}

export interface LoadOptions {
  /** Live replicas to spread calls over (read on every call: a killed one can be dropped). */
  replicas: () => Replica[];
  clients: number;
  /** Stop once this many distinct compositions got an allocation. */
  compositions: number;
  history: HistoryRecorder;
  /** Called after every completed allocation with the count so far (to inject faults). */
  onAllocated?: (count: number) => void;
  /** Deadline of one call, ms. Default 3000. */
  callTimeoutMs?: number;
}

export interface LoadResult {
  allocated: number;
  exhausted: number;
  retries: number;
  abandoned: number;
}

const determinate = (err: unknown, code: Status) => err instanceof ClientError && err.code === code;

/**
 * `clients` clients, each in a loop: allocate a new composition id on a random replica (retrying the same
 * id on another replica when the answer is not definite), sometimes retry it again on purpose, hold at
 * most one more, release (retrying until OK or NOT_FOUND). Every call is recorded in `history`.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { history } = options;
  const timeoutMs = options.callTimeoutMs ?? 3000;
  const result: LoadResult = { allocated: 0, exhausted: 0, retries: 0, abandoned: 0 };
  const pick = () => {
    const live = options.replicas();
    return live[Math.floor(Math.random() * live.length)]!.clients.allocation;
  };

  const allocateOnce = async (id: string) => {
    const call = history.invoke('allocate', id);
    try {
      const { allocation } = await pick().allocate(
        { fleet: 'load', compositionId: id },
        { signal: AbortSignal.timeout(timeoutMs) },
      );
      call.ok({ server: allocation!.serverName, token: allocation!.token });
      return allocation!;
    } catch (err) {
      call.fail(err);
      throw err;
    }
  };

  const release = async (id: string) => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const call = history.invoke('release', id);
      try {
        await pick().release({ compositionId: id }, { signal: AbortSignal.timeout(timeoutMs) });
        call.ok();
        return;
      } catch (err) {
        call.fail(err);
        if (determinate(err, Status.NOT_FOUND)) return;
        await systemClock.sleep(20 * Math.min(attempt + 1, 10));
      }
    }
    throw new Error(`release of ${id} never went through`);
  };

  /** An allocation for `id`, or undefined when definitely none is free. */
  const allocate = async (id: string) => {
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        return await allocateOnce(id);
      } catch (err) {
        if (determinate(err, Status.RESOURCE_EXHAUSTED)) return undefined;
        result.retries++;
        await systemClock.sleep(20 * Math.min(attempt + 1, 10));
      }
    }
    // Never answered for sure: it may hold a server, so give it back.
    result.abandoned++;
    await release(id);
    return undefined;
  };

  await Promise.all(
    Array.from({ length: options.clients }, async (_, w) => {
      const held: string[] = [];
      try {
        for (let n = 0; result.allocated < options.compositions; n++) {
          const id = `c${w}-${n}`;
          const a = await allocate(id);
          if (!a) {
            result.exhausted++;
            await systemClock.sleep(5); // the pool is empty for now: let releases come in
          } else {
            result.allocated++;
            options.onAllocated?.(result.allocated);
            held.push(id);
            // A client retrying for no reason must get the very same allocation.
            if (Math.random() < 0.2) await allocateOnce(id).catch(() => undefined);
          }
          while (held.length > 1 || (held.length > 0 && Math.random() < 0.5)) await release(held.shift()!);
        }
      } finally {
        for (const id of held) await release(id);
      }
    }),
  );
  return result;
}
