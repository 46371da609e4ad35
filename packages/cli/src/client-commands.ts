import { connectAllocator, stateFromProto, type AllocatorClients, type ConnectOptions } from '@smelter-fleet/allocator';
import { parseDurationMs } from '@smelter-fleet/core';
import type { allocationV1 } from '@smelter-fleet/proto';
import { ClientError, Status } from 'nice-grpc';
import { parseArgs } from 'node:util';
import { keyValues, parsing, UsageError } from './args.js';
import { CLIENT_AUTH_OPTIONS, clientAuth, type ClientAuthContext, type ClientAuthValues } from './auth-options.js';
import { PREFERENCE_OPTIONS, regionPreference } from './region-options.js';
import { renderStatus, type StatusView } from './table.js';

export interface ClientContext extends ClientAuthContext {
  /** host:port of the allocator, from --allocator, SMELTER_FLEET_ALLOCATOR, or the default. */
  defaultAllocator: string;
  out: (text: string) => void;
}

/** Deadline added on top of any wait the call asks for, ms. */
const CALL_DEADLINE_MS = 10_000;

const allocatorOption = { allocator: { type: 'string' }, ...CLIENT_AUTH_OPTIONS } as const;

/** Where a client command calls and how it authenticates (--allocator and the auth flags). */
export interface AllocatorTarget {
  address: string;
  connect: ConnectOptions;
}

export function allocatorTarget(
  command: string,
  values: ClientAuthValues & { allocator?: string | undefined },
  ctx: ClientContext,
): AllocatorTarget {
  return { address: values.allocator ?? ctx.defaultAllocator, connect: clientAuth(command, values, ctx) };
}

export async function withAllocator<T>(
  command: string,
  target: string | AllocatorTarget,
  fn: (c: AllocatorClients) => Promise<T>,
): Promise<T> {
  const { address, connect } = typeof target === 'string' ? { address: target, connect: {} } : target;
  const clients = connectAllocator(address, connect);
  try {
    return await fn(clients);
  } catch (err) {
    if (err instanceof ClientError) {
      if (err.code === Status.UNAVAILABLE || err.code === Status.DEADLINE_EXCEEDED)
        throw new CommandError(
          // UNAVAILABLE also comes from a running allocator whose shared store (Redis) is down.
          `${command}: cannot reach the allocator at ${address} (is \`smelter-fleet up\` running?) ` +
            `or its store: ${Status[err.code]}: ${err.details}`,
        );
      if (err.code === Status.UNAUTHENTICATED || err.code === Status.PERMISSION_DENIED)
        throw new CommandError(
          `${command}: ${Status[err.code]}: ${err.details} (the allocator at ${address} wants a token: --token, ` +
            "--token-file, $SMELTER_FLEET_TOKEN or `up`'s .smelter-fleet/api-token; or a client certificate: --cert/--key)",
        );
      throw new CommandError(`${command}: ${Status[err.code]}: ${err.details}`);
    }
    throw err;
  } finally {
    clients.close();
  }
}

/** A call that reached a verdict other than success: printed, exit code 1. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
}

function deadline(extraMs = 0): AbortSignal {
  return AbortSignal.timeout(CALL_DEADLINE_MS + extraMs);
}

function allocationJson(a: allocationV1.Allocation) {
  return {
    composition_id: a.compositionId,
    server_name: a.serverName,
    fleet: a.fleet,
    region: a.region,
    address: a.address,
    ports: a.ports,
    token: a.token,
    gateway_url: a.gatewayUrl,
    allocated_at: a.allocatedAt?.toISOString() ?? null,
    metadata: a.metadata,
  };
}

function describeAllocation(verb: string, a: allocationV1.Allocation): string {
  const ports = Object.entries(a.ports)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return [
    `${verb} composition ${a.compositionId} -> server ${a.serverName} (fleet ${a.fleet}, region ${a.region})`,
    `  address    ${a.address}`,
    `  ports      ${ports}`,
    `  token      ${a.token}`,
    ...(a.gatewayUrl ? [`  gateway    ${a.gatewayUrl}`] : []),
    `  allocated  ${a.allocatedAt?.toISOString() ?? ''}`,
    ...Object.entries(a.metadata).map(([k, v]) => `  metadata   ${k}=${v}`),
  ].join('\n');
}

export async function allocate(argv: string[], ctx: ClientContext): Promise<void> {
  const { values } = parsing('allocate', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...allocatorOption,
        fleet: { type: 'string' },
        composition: { type: 'string' },
        label: { type: 'string', multiple: true },
        metadata: { type: 'string', multiple: true },
        wait: { type: 'string' },
        ...PREFERENCE_OPTIONS,
        json: { type: 'boolean' },
      },
    }),
  );
  if (!values.composition) throw new UsageError('allocate: --composition <id> is required');
  if (!values.fleet && !values.label?.length)
    throw new UsageError('allocate: --fleet <name> (or --label k=v) is required');
  const waitMs = values.wait === undefined ? 0 : parseDurationMs(values.wait);
  if (waitMs === undefined)
    throw new UsageError(`allocate: --wait "${values.wait}": expected a duration like 500ms, 10s or 2m`);
  const request = {
    fleet: values.fleet ?? '',
    compositionId: values.composition,
    matchLabels: keyValues('label', values.label),
    metadata: keyValues('metadata', values.metadata),
    wait: { seconds: Math.floor(waitMs / 1000), nanos: (waitMs % 1000) * 1e6 },
    ...regionPreference(values),
  };
  const address = allocatorTarget('allocate', values, ctx);
  const res = await withAllocator('allocate', address, (c) =>
    c.allocation.allocate(request, { signal: deadline(waitMs) }),
  );
  const a = res.allocation!;
  ctx.out(values.json ? JSON.stringify(allocationJson(a), null, 2) : describeAllocation('allocated', a));
}

/** A command about one composition's allocation: `release` or `get`. */
async function byComposition(
  command: string,
  argv: string[],
  ctx: ClientContext,
  call: (
    c: AllocatorClients,
    compositionId: string,
    signal: AbortSignal,
  ) => Promise<{ allocation?: allocationV1.Allocation }>,
  describe: (a: allocationV1.Allocation) => string,
): Promise<void> {
  const { values } = parsing(command, () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { ...allocatorOption, composition: { type: 'string' }, json: { type: 'boolean' } },
    }),
  );
  if (!values.composition) throw new UsageError(`${command}: --composition <id> is required`);
  const compositionId = values.composition;
  const res = await withAllocator(command, allocatorTarget(command, values, ctx), (c) =>
    call(c, compositionId, deadline()),
  );
  const a = res.allocation!;
  ctx.out(values.json ? JSON.stringify(allocationJson(a), null, 2) : describe(a));
}

export const release = (argv: string[], ctx: ClientContext) =>
  byComposition(
    'release',
    argv,
    ctx,
    (c, compositionId, signal) => c.allocation.release({ compositionId }, { signal }),
    (a) => `released composition ${a.compositionId} (server ${a.serverName})`,
  );

export const get = (argv: string[], ctx: ClientContext) =>
  byComposition(
    'get',
    argv,
    ctx,
    (c, compositionId, signal) => c.allocation.getAllocation({ compositionId }, { signal }),
    (a) => describeAllocation('composition', a),
  );

export async function status(argv: string[], ctx: ClientContext): Promise<void> {
  const { values } = parsing('status', () =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { ...allocatorOption, fleet: { type: 'string' }, json: { type: 'boolean' } },
    }),
  );
  const address = allocatorTarget('status', values, ctx);
  const view = await withAllocator('status', address, async (c) => {
    const [fleets, servers] = await Promise.all([
      c.fleet.listFleets({}, { signal: deadline() }),
      c.fleet.listServers({ fleet: values.fleet ?? '' }, { signal: deadline() }),
    ]);
    const view: StatusView = {
      fleets: fleets.fleets
        .filter((f) => !values.fleet || f.name === values.fleet)
        .map((f) => ({
          name: f.name,
          region: f.region,
          replicas: f.replicas,
          scheduling: f.scheduling,
          emulated: f.emulated,
          smelterCommand: f.smelterCommand,
          serversByState: f.serversByState,
          rollout: {
            templateHash: f.templateHash,
            updated: f.updatedServers,
            outdated: f.outdatedServers,
            strategy: f.strategy,
            maxSurge: f.maxSurge,
            maxUnavailable: f.maxUnavailable,
          },
        })),
      servers: servers.servers.map((s) => ({
        name: s.name,
        fleet: s.fleet,
        state: stateFromProto(s.state) ?? 'Unknown',
        address: s.address,
        ports: s.ports,
        composition: s.compositionId,
        pid: s.pid || null,
        reason: s.reason,
        outdated: s.outdated,
        drainDeadline: s.drainDeadline?.getTime() ?? null,
        drainRequested: s.drainRequested,
      })),
    };
    return view;
  });
  ctx.out(values.json ? JSON.stringify(view, null, 2) : renderStatus(view));
}
