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

const STATE_ORDER = ['Starting', 'Ready', 'Allocated', 'Draining', 'Shutdown', 'Unhealthy', 'Error'];

export function renderStatus(view: StatusView): string {
  const out: string[] = [];
  for (const f of view.fleets) {
    const counts = STATE_ORDER.filter((s) => f.serversByState[s]).map((s) => `${s} ${f.serversByState[s]}`);
    const what = f.emulated ? 'Smelter EMULATOR (not Smelter)' : f.smelterCommand;
    out.push(
      `fleet ${f.name}  region ${f.region}  desired ${f.replicas}  ${counts.join(', ') || 'no servers'}  [${what}]`,
    );
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
