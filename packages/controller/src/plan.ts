import {
  DEFAULT_STRATEGY,
  isTerminal,
  resolveIntOrPercent,
  type FleetStrategy,
  type Scheduling,
  type ServerState,
} from '@smelter-fleet/core';

/** What the planner needs of one server. */
export interface PlanServer {
  name: string;
  state: ServerState;
  node: string;
  /** Epoch ms. */
  createdAt: number;
  /** Runs the fleet's current template (its template-hash label is the fleet's). */
  current: boolean;
  /** Holds (or held, while Draining) a composition. */
  hasComposition: boolean;
  /** An operation is under way on it (launch, stop): never picked. */
  busy: boolean;
}

export interface PlanInput {
  /** Desired Ready + Allocated servers (the fleet's replicas; 0 for a removed fleet). */
  replicas: number;
  scheduling: Scheduling;
  strategy?: FleetStrategy;
  servers: readonly PlanServer[];
}

export type StopWhy = 'surplus' | 'outdated' | 'drained';

export interface FleetPlan {
  /** New servers of the current template to launch now. */
  launch: number;
  /** Starting or Ready servers (and Draining ones with no composition) to stop now. */
  stop: { name: string; why: StopWhy }[];
  /** Outdated Allocated servers to mark Draining: they leave when their composition ends. */
  drain: string[];
  status: PlanStatus;
}

export interface PlanStatus {
  /** Servers holding compositions: Allocated, and Draining with a composition. */
  inUse: number;
  /** Warm servers wanted: replicas minus inUse, at least 0. */
  warmTarget: number;
  /** Non-terminal servers of the current template / of an older one. */
  updated: number;
  outdated: number;
  /** maxSurge / maxUnavailable resolved against warmTarget (RollingUpdate). */
  maxSurge: number;
  maxUnavailable: number;
  /** No server of an older template is left. */
  rolloutComplete: boolean;
}

/**
 * One reconcile decision for one fleet, pure. The fleet keeps `replicas` servers counting those in use
 * (Allocated, or Draining with a composition) and warm ones (Starting, Ready), so the warm pool is
 * replicas - inUse. In-use servers are never stopped here: outdated Allocated ones are marked Draining (they
 * leave when their composition ends, or at the max drain time) and, like Kubernetes' terminating pods, they do not
 * hold back the rollout: maxSurge and maxUnavailable bound only the warm pool, resolved against its size
 * (Agones #3970, #3688, #3438). Only Ready servers count as available (Agones #1625).
 */
export function planFleet(input: PlanInput): FleetPlan {
  const strategy = input.strategy ?? DEFAULT_STRATEGY;
  const stop: FleetPlan['stop'] = [];
  const drain: string[] = [];
  const live = input.servers.filter((s) => !isTerminal(s.state));
  const inUse = live.filter((s) => s.state === 'Allocated' || (s.state === 'Draining' && s.hasComposition));
  const warmTarget = Math.max(0, input.replicas - inUse.length);
  for (const s of live)
    if (s.busy) continue;
    else if (s.state === 'Draining' && !s.hasComposition) stop.push({ name: s.name, why: 'drained' });
    else if (s.state === 'Allocated' && !s.current) drain.push(s.name);

  const warm = live.filter((s) => s.state === 'Starting' || s.state === 'Ready');
  const newWarm = warm.filter((s) => s.current);
  const oldWarm = warm.filter((s) => !s.current);
  const rolling = strategy.type === 'RollingUpdate';
  let maxSurge = rolling ? resolveIntOrPercent(strategy.rollingUpdate.maxSurge, warmTarget, true) : 0;
  const maxUnavailable = rolling ? resolveIntOrPercent(strategy.rollingUpdate.maxUnavailable, warmTarget, false) : 0;
  if (rolling && maxSurge === 0 && maxUnavailable === 0 && warmTarget > 0) maxSurge = 1; // always progress
  const ranked = (candidates: PlanServer[]) => retirementOrder(candidates, live, input.scheduling);
  const stopAll = (list: PlanServer[], why: StopWhy) => {
    for (const s of list) if (!s.busy) stop.push({ name: s.name, why });
  };

  let launch = 0;
  if (oldWarm.length === 0) {
    if (newWarm.length < warmTarget) launch = warmTarget - newWarm.length;
    else if (newWarm.length > warmTarget)
      for (const s of ranked(newWarm).slice(0, newWarm.length - warmTarget))
        stop.push({ name: s.name, why: 'surplus' });
  } else if (!rolling) {
    // Recreate: old warm servers go at once; new ones start on a later pass, once none is left.
    stopAll(oldWarm, 'outdated');
  } else {
    // New servers beyond the pool (replicas lowered mid-rollout) go first, Starting ones before Ready ones.
    const surplus = new Set(newWarm.length > warmTarget ? ranked(newWarm).slice(0, newWarm.length - warmTarget) : []);
    for (const s of surplus) stop.push({ name: s.name, why: 'surplus' });
    const keptNew = newWarm.filter((s) => !surplus.has(s));
    // An old server still starting is not available: it goes at once.
    stopAll(
      oldWarm.filter((s) => s.state === 'Starting'),
      'outdated',
    );
    const oldReady = oldWarm.filter((s) => s.state === 'Ready');
    const newReady = keptNew.filter((s) => s.state === 'Ready').length;
    launch = Math.max(
      0,
      Math.min(warmTarget - keptNew.length, warmTarget + maxSurge - keptNew.length - oldReady.length),
    );
    // Only Ready servers count as available (Agones #1625): old Ready ones go while W - maxUnavailable stay Ready.
    const retire = Math.max(0, newReady + oldReady.length - (warmTarget - maxUnavailable));
    if (retire > 0) for (const s of ranked(oldReady).slice(0, retire)) stop.push({ name: s.name, why: 'outdated' });
  }

  const updated = live.filter((s) => s.current).length;
  return {
    launch,
    stop,
    drain,
    status: {
      inUse: inUse.length,
      warmTarget,
      updated,
      outdated: live.length - updated,
      maxSurge,
      maxUnavailable,
      rolloutComplete: live.length === updated,
    },
  };
}

/**
 * Warm servers in the order they are retired: Starting before Ready (newest first), then Ready by node:
 * Packed takes the emptiest nodes first (so they free up), Distributed the fullest (so load evens out),
 * counting every live server of the fleet per node; within a node the newest first.
 */
export function retirementOrder(
  candidates: readonly PlanServer[],
  live: readonly PlanServer[],
  scheduling: Scheduling,
): PlanServer[] {
  const perNode = new Map<string, number>();
  for (const s of live) perNode.set(s.node, (perNode.get(s.node) ?? 0) + 1);
  const newestFirst = (a: PlanServer, b: PlanServer) => b.createdAt - a.createdAt || (a.name < b.name ? -1 : 1);
  const starting = candidates.filter((s) => s.state === 'Starting' && !s.busy).sort(newestFirst);
  const byNode = new Map<string, PlanServer[]>();
  for (const s of candidates)
    if (s.state === 'Ready' && !s.busy) {
      const list = byNode.get(s.node);
      if (list) list.push(s);
      else byNode.set(s.node, [s]);
    }
  // Greedy, one server at a time, on the node's count as it drops: the j-th server taken from a node of n
  // servers sees n - j. Packed keeps taking from the emptiest node; Distributed from whichever is fullest now.
  const keyed: { s: PlanServer; key: number }[] = [];
  for (const [node, list] of byNode) {
    list.sort(newestFirst);
    const n = perNode.get(node) ?? list.length;
    list.forEach((s, j) => keyed.push({ s, key: scheduling === 'Packed' ? n : -(n - j) }));
  }
  keyed.sort(
    (a, b) => a.key - b.key || (a.s.node < b.s.node ? -1 : a.s.node > b.s.node ? 1 : 0) || newestFirst(a.s, b.s),
  );
  return [...starting, ...keyed.map((k) => k.s)];
}
