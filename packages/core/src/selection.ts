import type { ServerRecord } from './types.js';

export type Scheduling = 'Packed' | 'Distributed';

export function matchesLabels(server: Pick<ServerRecord, 'labels'>, matchLabels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(matchLabels)) if (server.labels[key] !== value) return false;
  return true;
}

/**
 * Picks the Ready server a new composition gets. Pure.
 * Packed (Agones' default): fill the busiest node first, so whole nodes empty out for scale-down.
 * Distributed: spread over the least busy nodes.
 * Ties go to the oldest server, then by name, so the choice is deterministic.
 * @param candidates Ready servers that match the request.
 * @param allocatedPerNode Allocated server count by node.
 */
export function selectServer<S extends Pick<ServerRecord, 'name' | 'node' | 'createdAt'>>(
  candidates: Iterable<S>,
  allocatedPerNode: ReadonlyMap<string, number>,
  scheduling: Scheduling,
): S | undefined {
  const sign = scheduling === 'Packed' ? -1 : 1;
  let best: S | undefined;
  let bestLoad = 0;
  for (const c of candidates) {
    const load = allocatedPerNode.get(c.node) ?? 0;
    if (best === undefined) {
      best = c;
      bestLoad = load;
      continue;
    }
    const byLoad = sign * (load - bestLoad);
    if (
      byLoad < 0 ||
      (byLoad === 0 && (c.createdAt < best.createdAt || (c.createdAt === best.createdAt && c.name < best.name)))
    ) {
      best = c;
      bestLoad = load;
    }
  }
  return best;
}
