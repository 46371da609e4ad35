import { FleetError, isFleetError, type Allocation, type AllocationRequest, type Store } from '@smelter-fleet/core';

/**
 * Allocates, waiting up to `waitMs` for a Ready server when none is free (instead of failing
 * while a scale-up is on its way: Agones #2145). Woken by the store's change feed, not a poll.
 */
export async function allocateWithWait(
  store: Store,
  request: AllocationRequest,
  waitMs: number,
  signal?: AbortSignal,
): Promise<Allocation> {
  try {
    return await store.allocate(request);
  } catch (err) {
    if (waitMs <= 0 || !isFleetError(err, 'RESOURCE_EXHAUSTED')) throw err;
  }
  const watching = new AbortController();
  const timer = setTimeout(() => watching.abort(), waitMs);
  const onAbort = () => watching.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    // Subscribe before trying again, so a server turning Ready in between is not missed.
    const events = store.watch(watching.signal);
    const attempt = async () => {
      try {
        return await store.allocate(request);
      } catch (err) {
        if (isFleetError(err, 'RESOURCE_EXHAUSTED')) return undefined;
        throw err;
      }
    };
    const first = await attempt();
    if (first) return first;
    for await (const event of events) {
      if (event.type !== 'server' || event.server.state !== 'Ready' || event.removed) continue;
      if (request.fleet && event.server.fleet !== request.fleet) continue;
      const allocation = await attempt();
      if (allocation) return allocation;
    }
    signal?.throwIfAborted();
    const where = request.fleet ? `fleet "${request.fleet}"` : 'match_labels';
    throw new FleetError('RESOURCE_EXHAUSTED', `no Ready server in ${where} after waiting ${waitMs} ms`);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    watching.abort();
  }
}
