import { SERVER_STATES } from '@smelter-fleet/core';

/** Renders rows as an aligned plain-text table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export interface StatusView {
  fleets: {
    name: string;
    region: string;
    replicas: number;
    emulated: boolean;
    smelterCommand: string;
    serversByState: Record<string, number>;
    /** Rollout progress (from the allocator's FleetService). */
    rollout?: {
      templateHash: string;
      updated: number;
      outdated: number;
      strategy: string;
      maxSurge: string;
      maxUnavailable: string;
    };
  }[];
  servers: {
    name: string;
    fleet: string;
    state: string;
    address: string;
    ports: Record<string, number>;
    composition: string;
    pid: number | null;
    reason: string;
    /** Runs an older template than its fleet's. */
    outdated?: boolean;
    /** While Draining: epoch ms when the max drain time runs out. */
    drainDeadline?: number | null;
    /** Why it was told to leave, if it was. */
    drainRequested?: string;
  }[];
}

/** 3h05m, 4m10s, 12s. */
export function formatDuration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** "Ready 2, Allocated 1", in lifecycle order. */
export function countsByState(byState: Record<string, number>): string {
  return SERVER_STATES.filter((s) => byState[s])
    .map((s) => `${s} ${byState[s]}`)
    .join(', ');
}

export function renderStatus(view: StatusView, now = Date.now()): string {
  const out: string[] = [];
  for (const f of view.fleets) {
    const what = f.emulated ? 'Smelter EMULATOR (not Smelter)' : f.smelterCommand;
    const counts = countsByState(f.serversByState) || 'no servers';
    out.push(`fleet ${f.name}  region ${f.region}  desired ${f.replicas}  ${counts}  [${what}]`);
    const r = f.rollout;
    if (r && r.outdated > 0) {
      const limits = r.strategy === 'RollingUpdate' ? ` maxSurge ${r.maxSurge} maxUnavailable ${r.maxUnavailable}` : '';
      out.push(
        `  rollout to template ${r.templateHash} (${r.strategy}${limits}): ${r.updated} updated, ${r.outdated} outdated`,
      );
    }
    for (const s of view.servers)
      if (s.fleet === f.name && s.state === 'Draining' && s.drainDeadline) {
        const left = Math.max(0, s.drainDeadline - now);
        const holding = s.composition ? `composition ${s.composition}` : 'no composition';
        const why = s.drainRequested ? `, ${s.drainRequested}` : s.outdated ? ', outdated' : '';
        out.push(`  draining ${s.name}: ${holding}, ${formatDuration(left)} left of the max drain time${why}`);
      }
  }
  const rows = view.servers.map((s) => [
    s.name,
    s.fleet,
    s.state,
    s.address,
    String(s.ports.api ?? ''),
    String(s.ports.whip_whep ?? ''),
    String(s.ports.rtmp ?? ''),
    s.pid ? String(s.pid) : '',
    s.composition,
    s.reason,
  ]);
  out.push(
    '',
    table(['SERVER', 'FLEET', 'STATE', 'ADDRESS', 'API', 'WHIP/WHEP', 'RTMP', 'PID', 'COMPOSITION', 'REASON'], rows),
  );
  return out.join('\n');
}
