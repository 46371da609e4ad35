import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import {
  AUTOSCALER_KIND,
  autoscalerSpecFromObject,
  FLEET_PARSERS,
  FleetSpecError,
  parseManifest,
  type KindParser,
} from '@smelter-fleet/core';
import type { fleetV1 } from '@smelter-fleet/proto';
import { parsing, UsageError } from './args.js';
import { CLIENT_AUTH_OPTIONS } from './auth-options.js';
import { allocatorTarget, CommandError, withAllocator, type ClientContext } from './client-commands.js';
import { formatDuration, table } from './table.js';

/** Kinds `apply` validates locally before sending (the allocator validates again). Add a kind here and in up's handlers. */
export const APPLY_PARSERS: Record<string, KindParser> = {
  ...FLEET_PARSERS,
  [AUTOSCALER_KIND]: autoscalerSpecFromObject,
};

const CALL_DEADLINE_MS = 10_000;
const allocatorOption = { allocator: { type: 'string' }, ...CLIENT_AUTH_OPTIONS } as const;

/** `smelter-fleet apply -f fleet.yaml`: creates or changes fleets of a running `up` (scale, template, policies). */
export async function apply(argv: string[], ctx: ClientContext): Promise<void> {
  const { values } = parsing('apply', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...allocatorOption,
        file: { type: 'string', short: 'f' },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
      },
    }),
  );
  const file = values.file;
  if (!file) throw new UsageError('apply: -f <fleet file> is required');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CommandError(`apply: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    parseManifest(text, file, APPLY_PARSERS);
  } catch (err) {
    if (err instanceof FleetSpecError) throw new CommandError(`apply: invalid fleet file: ${err.message}`);
    throw err;
  }
  const res = await withAllocator('apply', allocatorTarget('apply', values, ctx), (c) =>
    c.fleet.applyFleet(
      { manifest: text, fileName: file, dryRun: values['dry-run'] === true },
      { signal: AbortSignal.timeout(CALL_DEADLINE_MS) },
    ),
  );
  if (values.json) return ctx.out(JSON.stringify(res.objects, null, 2));
  const suffix = values['dry-run'] ? ' (dry run)' : '';
  for (const o of res.objects)
    ctx.out(`${o.kind.toLowerCase()}/${o.name} ${o.result}${suffix}${o.message ? `: ${o.message}` : ''}`);
}

/** `smelter-fleet drain <server>... | --fleet <name>`: servers take no new composition and leave once theirs ends. */
export async function drain(argv: string[], ctx: ClientContext): Promise<void> {
  const { values, positionals } = parsing('drain', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        ...allocatorOption,
        fleet: { type: 'string' },
        reason: { type: 'string' },
        json: { type: 'boolean' },
      },
    }),
  );
  if (positionals.length === 0 && !values.fleet) throw new UsageError('drain: name servers, or --fleet <name>');
  if (positionals.length > 0 && values.fleet) throw new UsageError('drain: name servers or --fleet, not both');
  const res = await withAllocator('drain', allocatorTarget('drain', values, ctx), (c) =>
    c.fleet.drainServers(
      { servers: positionals, fleet: values.fleet ?? '', reason: values.reason ?? '' },
      { signal: AbortSignal.timeout(CALL_DEADLINE_MS) },
    ),
  );
  if (values.json)
    return ctx.out(
      JSON.stringify(
        res.servers.map((s) => ({
          name: s.name,
          fleet: s.fleet,
          composition: s.compositionId,
          drain_deadline: s.drainDeadline?.toISOString() ?? null,
        })),
        null,
        2,
      ),
    );
  if (res.servers.length === 0) return ctx.out('no server to drain');
  for (const s of res.servers) ctx.out(describeDrained(s));
}

function describeDrained(s: fleetV1.Server): string {
  if (!s.drainDeadline) return `server ${s.name} stopping (it was not Ready yet)`;
  if (!s.compositionId) return `server ${s.name} draining: it holds no composition, so it stops now`;
  return `server ${s.name} draining: stops when composition ${s.compositionId} ends, at the latest ${s.drainDeadline.toISOString()}`;
}

/** `smelter-fleet events`: what the controller did (scale, rollout, drains, drain timeouts, replacements). */
export async function events(argv: string[], ctx: ClientContext, now = Date.now()): Promise<void> {
  const { values } = parsing('events', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { ...allocatorOption, fleet: { type: 'string' }, server: { type: 'string' }, json: { type: 'boolean' } },
    }),
  );
  const res = await withAllocator('events', allocatorTarget('events', values, ctx), (c) =>
    c.fleet.listEvents(
      { fleet: values.fleet ?? '', object: values.server ? `server/${values.server}` : '' },
      { signal: AbortSignal.timeout(CALL_DEADLINE_MS) },
    ),
  );
  if (values.json)
    return ctx.out(
      JSON.stringify(
        res.events.map((e) => ({
          ...e,
          firstTime: e.firstTime?.toISOString() ?? null,
          lastTime: e.lastTime?.toISOString() ?? null,
        })),
        null,
        2,
      ),
    );
  const rows = res.events.map((e) => [
    e.lastTime ? `${formatDuration(now - e.lastTime.getTime())} ago` : '',
    e.type,
    e.reason,
    e.object,
    String(e.count),
    e.message,
  ]);
  ctx.out(rows.length === 0 ? 'no events' : table(['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'COUNT', 'MESSAGE'], rows));
}
