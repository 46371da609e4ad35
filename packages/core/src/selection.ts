import type { ServerRecord } from './types.js';

export type Scheduling = 'Packed' | 'Distributed';

export function matchesLabels(server: Pick<ServerRecord, 'labels'>, matchLabels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(matchLabels)) if (server.labels[key] !== value) return false;
  return true;
}

/**
 * Node preference. Packed (Agones' default): the busiest node first, so whole nodes empty out for
 * scale-down. Distributed: the least busy first. Ties by node name, so the choice is deterministic.
 */
export function compareNodes(
  a: { node: string; allocated: number },
  b: { node: string; allocated: number },
  scheduling: Scheduling,
): number {
  const byLoad = scheduling === 'Packed' ? b.allocated - a.allocated : a.allocated - b.allocated;
  return byLoad || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

/** Within a node: the oldest server first, then by name. */
export function compareAge(
  a: Pick<ServerRecord, 'createdAt' | 'name'>,
  b: Pick<ServerRecord, 'createdAt' | 'name'>,
): number {
  return a.createdAt - b.createdAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * Picks the Ready server a new composition gets: the preferred node (compareNodes) that has a
 * candidate, then its oldest candidate (compareAge). Pure; stores may reach the same choice faster
 * with indexes, and are tested against this.
 * @param candidates Ready servers that match the request.
 * @param allocatedPerNode Allocated server count by node.
 */
export function selectServer<S extends Pick<ServerRecord, 'name' | 'node' | 'createdAt'>>(
  candidates: Iterable<S>,
  allocatedPerNode: ReadonlyMap<string, number>,
  scheduling: Scheduling,
): S | undefined {
  let best: S | undefined;
  for (const c of candidates) {
    if (best === undefined) {
      best = c;
      continue;
    }
    const byNode = compareNodes(
      { node: c.node, allocated: allocatedPerNode.get(c.node) ?? 0 },
      { node: best.node, allocated: allocatedPerNode.get(best.node) ?? 0 },
      scheduling,
    );
    if (byNode < 0 || (byNode === 0 && compareAge(c, best) < 0)) best = c;
  }
  return best;
}
