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
  }[];
}

/** "Ready 2, Allocated 1", in lifecycle order. */
export function countsByState(byState: Record<string, number>): string {
  return SERVER_STATES.filter((s) => byState[s])
    .map((s) => `${s} ${byState[s]}`)
    .join(', ');
}

export function renderStatus(view: StatusView): string {
  const out: string[] = [];
  for (const f of view.fleets) {
    const what = f.emulated ? 'Smelter EMULATOR (not Smelter)' : f.smelterCommand;
    const counts = countsByState(f.serversByState) || 'no servers';
    out.push(`fleet ${f.name}  region ${f.region}  desired ${f.replicas}  ${counts}  [${what}]`);
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
