import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  generateTrace,
  parseGeneratorSpec,
  simulate,
  SimulateError,
  traceFromJson,
  traceToJson,
  TraceError,
  type SimReport,
  type Trace,
} from '@smelter-fleet/autoscaler';
import { FleetSpecError, parseAutoscalerFile, parseDurationMs, type AutoscalerSpec } from '@smelter-fleet/core';
import { parsing, UsageError } from './args.js';
import { CommandError } from './client-commands.js';

export interface SimulateContext {
  out: (text: string) => void;
}

export const SIMULATE_USAGE = `smelter-fleet simulate --trace <file.json|gen:key=value,...> [--policy <file.yaml|inline>]...
                       [--cold-start 30s] [--flush 5s] [--wait 2m] [--json] [--write-trace out.json]
      Replays a composition-arrival trace against the real controller and autoscaler in virtual time and reports
      warm allocations, waits, failures and idle server-seconds against the oracle's minimum.
      Inline policies: predictive[:quantile=0.999,window=15m,minReady=0,stabilization=60s]
      buffer:N[:stabilization=60s]   agones-buffer:N (fixed buffer, 30 s poll, no scale-down delay: the baseline)
      Default: --policy predictive --policy agones-buffer:5 --policy agones-buffer:10`;

const DEFAULT_POLICIES = ['predictive', 'agones-buffer:5', 'agones-buffer:10'];

function duration(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseDurationMs(value);
  if (ms === undefined) throw new UsageError(`simulate: --${flag} "${value}": expected a duration like 500ms, 30s, 5m`);
  return ms;
}

/** An inline policy (`predictive:quantile=0.99`, `buffer:3`, `agones-buffer:5`) or a file of autoscaler documents. */
async function loadPolicies(arg: string, coldStartMs: number): Promise<AutoscalerSpec[]> {
  const m = /^(predictive|buffer|agones-buffer)(?::(.*))?$/.exec(arg);
  if (!m) {
    let text: string;
    try {
      text = await readFile(arg, 'utf8');
    } catch (err) {
      throw new CommandError(
        `simulate: --policy "${arg}" is neither an inline policy (predictive, buffer:N, agones-buffer:N) nor a readable file: ${(err as Error).message}`,
      );
    }
    return parseAutoscalerFile(text, arg);
  }
  const [, kind, rest = ''] = m;
  const parts = rest === '' ? [] : rest.split(/[,:]/);
  const params: Record<string, string> = {};
  let size: number | undefined;
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0 && kind !== 'predictive' && size === undefined && /^\d+$/.test(p)) size = Number(p);
    else if (eq > 0) params[p.slice(0, eq)] = p.slice(eq + 1);
    else throw new UsageError(`simulate: --policy "${arg}": "${p}" should be key=value`);
  }
  const stabilization = params.stabilization;
  delete params.stabilization;
  const num = (v: string) => (/^\d+(\.\d+)?$/.test(v) ? Number(v) : v);
  let spec: Record<string, unknown>;
  if (kind === 'predictive') {
    const predictive: Record<string, unknown> = { coldStart: `${coldStartMs}ms`, maxReplicas: 10_000 };
    for (const [k, v] of Object.entries(params)) predictive[k] = num(v);
    spec = { policy: { type: 'Predictive', predictive } };
  } else {
    if (size === undefined) throw new UsageError(`simulate: --policy "${arg}": give the buffer size, e.g. ${kind}:5`);
    if (Object.keys(params).length > 0)
      throw new UsageError(
        `simulate: --policy "${arg}": unknown option ${Object.keys(params)[0]} (only stabilization)`,
      );
    spec = { policy: { type: 'Buffer', buffer: { bufferSize: size, maxReplicas: 10_000 } } };
    if (kind === 'agones-buffer') {
      if (stabilization !== undefined)
        throw new UsageError(`simulate: --policy "${arg}": agones-buffer has no stabilization`);
      spec.sync = { type: 'FixedInterval', interval: '30s' };
      spec.behavior = { scaleDownStabilization: '0s' };
    }
  }
  if (stabilization !== undefined) spec.behavior = { scaleDownStabilization: stabilization };
  const doc = {
    apiVersion: 'smelterfleet.dev/v1alpha1',
    kind: 'SmelterFleetAutoscaler',
    metadata: { name: 'inline' },
    spec: { fleetName: 'sim', ...spec },
  };
  const [parsed] = parseAutoscalerFile(JSON.stringify(doc), `--policy ${arg}`);
  return [{ ...parsed!, name: arg }];
}

async function loadTrace(arg: string): Promise<Trace> {
  if (arg === 'gen' || arg.startsWith('gen:'))
    return { ...generateTrace(parseGeneratorSpec(arg), arg), generator: arg };
  let text: string;
  try {
    text = await readFile(arg, 'utf8');
  } catch (err) {
    throw new CommandError(`simulate: cannot read trace ${arg}: ${(err as Error).message}`);
  }
  return traceFromJson(text, arg);
}

const fmtS = (ms: number) => (ms >= 10_000 ? `${Math.round(ms / 1000)}s` : `${(ms / 1000).toFixed(1)}s`);

/** The results as a Markdown table (also readable in a terminal). */
export function renderSimTable(reports: SimReport[]): string {
  const header = [
    'trace',
    'policy',
    'arrivals',
    'warm %',
    'wait p50/p99/max',
    'failed',
    'idle server-s',
    'oracle idle',
    'idle / oracle',
    'peak servers',
  ];
  const rows = reports.map((r) => [
    r.trace,
    r.policy,
    String(r.arrivals),
    r.warmPercent.toFixed(2),
    `${fmtS(r.waitP50Ms)} / ${fmtS(r.waitP99Ms)} / ${fmtS(r.waitMaxMs)}`,
    String(r.failed),
    String(Math.round(r.idleServerSeconds)),
    String(Math.round(r.oracleIdleServerSeconds)),
    `${r.idleVsOracle.toFixed(2)}x`,
    String(r.peakServers),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export async function simulateCommand(argv: string[], ctx: SimulateContext): Promise<void> {
  const { values } = parsing('simulate', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        trace: { type: 'string', multiple: true },
        policy: { type: 'string', multiple: true },
        'cold-start': { type: 'string' },
        flush: { type: 'string' },
        wait: { type: 'string' },
        json: { type: 'boolean' },
        'write-trace': { type: 'string' },
      },
    }),
  );
  if (!values.trace || values.trace.length === 0)
    throw new UsageError('simulate: --trace is required (a trace file, or a generator like gen:seed=1,duration=2h)');
  const coldStartMs = duration('cold-start', values['cold-start'], 30_000);
  const flushTimeMs = duration('flush', values.flush, 5000);
  const waitBudgetMs = duration('wait', values.wait, 120_000);
  try {
    const traces = await Promise.all(values.trace.map(loadTrace));
    if (values['write-trace']) {
      if (traces.length !== 1) throw new UsageError('simulate: --write-trace takes exactly one --trace');
      await writeFile(values['write-trace'], traceToJson(traces[0]!));
      ctx.out(`wrote ${values['write-trace']}: ${traces[0]!.arrivals.length} arrivals`);
      if (!values.policy) return;
    }
    const policies = (
      await Promise.all((values.policy ?? DEFAULT_POLICIES).map((p) => loadPolicies(p, coldStartMs)))
    ).flat();
    const reports: SimReport[] = [];
    for (const trace of traces)
      for (const autoscaler of policies)
        reports.push(await simulate({ trace, autoscaler, coldStartMs, flushTimeMs, waitBudgetMs }));
    if (values.json) ctx.out(JSON.stringify(reports, null, 2));
    else {
      ctx.out(
        `cold start ${fmtS(coldStartMs)}, flush ${fmtS(flushTimeMs)}, wait budget ${fmtS(waitBudgetMs)}; idle = server-seconds Starting + Ready`,
      );
      ctx.out(renderSimTable(reports));
    }
  } catch (err) {
    if (err instanceof TraceError || err instanceof FleetSpecError || err instanceof SimulateError)
      throw new CommandError(`simulate: ${err.message}`);
    throw err;
  }
}
