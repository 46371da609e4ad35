import {
  Channel,
  checkLinkToken,
  checkSdkAnnotation,
  checkSdkLabel,
  holdsComposition,
  isFleetError,
  isTerminal,
  mayRecycle,
  mergeSdkEntries,
  type FleetSpec,
  type Logger,
  type ServerRecord,
  type ServerUpdate,
  type Store,
} from '@smelter-fleet/core';
import { linkV1 } from '@smelter-fleet/proto';
import { ServerError, Status, type CallContext, type ServiceImplementation } from 'nice-grpc';

export interface FleetLinkOptions {
  store: Store;
  /** Secret the sidecars' link tokens are derived from (see core's linkToken). Never log it. */
  linkSecret: string;
  logger: Logger;
}

type Report = linkV1.SidecarReport;

/** One connected sidecar. Views are recomputed from the store (level, not edge), one at a time. */
class Link {
  readonly out: Channel<linkV1.ConnectResponse>;
  private dirty = false;
  private pumping = false;
  /** Reports are applied in order, one at a time. */
  private applying: Promise<void> = Promise.resolve();
  /** A report that could not all be applied yet (the server was not launched yet): applied again on change. */
  private deferred: Report | undefined;

  constructor(
    readonly name: string,
    private readonly store: Store,
    signal: AbortSignal,
    private readonly logger: Logger,
  ) {
    this.out = new Channel(signal);
  }

  notify(): void {
    this.dirty = true;
    if (!this.pumping) void this.pump();
    if (this.deferred) void this.apply(this.deferred);
  }

  apply(report: Report): Promise<void> {
    this.deferred = undefined;
    this.applying = this.applying
      .then(async () => {
        if (!(await applyReport(this.store, this.name, report, this.logger))) this.deferred = report;
      })
      .catch((err) => this.logger.error('cannot apply sidecar report', { server: this.name, error: String(err) }));
    return this.applying;
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.dirty) {
        this.dirty = false;
        const server = await this.store.getServer(this.name);
        if (!server) {
          this.out.close();
          return;
        }
        const fleet = await this.store.getFleet(server.fleet);
        this.out.push(await view(this.store, server, fleet));
      }
    } catch (err) {
      this.logger.error('cannot send server view', { server: this.name, error: String(err) });
    } finally {
      this.pumping = false;
    }
  }
}

/**
 * The fleet's end of the sidecar link: authenticates each sidecar for its own server, renews the
 * server's lease on every message, applies the sidecar's reports to the store and pushes the server's
 * view back on every change.
 */
export function fleetLinkService(options: FleetLinkOptions): {
  impl: ServiceImplementation<typeof linkV1.FleetLinkServiceDefinition>;
  close(): void;
} {
  const { store, logger } = options;
  const links = new Map<string, Link>();
  const stop = new AbortController();

  // One watch for every link, dispatched by server (and by fleet for policy changes).
  void (async () => {
    for await (const event of store.watch(stop.signal)) {
      if (event.type === 'server') links.get(event.server.name)?.notify();
      else if (event.type === 'allocation') links.get(event.allocation.serverName)?.notify();
      else for (const link of links.values()) link.notify();
    }
  })();

  async function* connect(
    requests: AsyncIterable<linkV1.ConnectRequest>,
    context: CallContext,
  ): AsyncIterable<linkV1.ConnectResponse> {
    const iterator = requests[Symbol.asyncIterator]();
    const first = await iterator.next();
    const register = first.done ? undefined : first.value.register;
    if (!register?.serverName)
      throw new ServerError(Status.INVALID_ARGUMENT, 'first message must be register with server_name');
    const name = register.serverName;
    const token = /^Bearer (.+)$/.exec(context.metadata.get('authorization') ?? '')?.[1] ?? '';
    if (!checkLinkToken(options.linkSecret, name, token))
      throw new ServerError(Status.UNAUTHENTICATED, `no valid link token for server "${name}"`);
    const server = await store.getServer(name);
    if (!server) throw new ServerError(Status.NOT_FOUND, `server "${name}" not found`);
    const fleet = await store.getFleet(server.fleet);
    const leaseMs = fleet?.health.leaseTimeoutMs ?? 3000;

    const link = new Link(name, store, context.signal, logger);
    links.get(name)?.out.close(); // a reconnecting sidecar replaces its old link
    links.set(name, link);
    logger.info('sidecar connected', { server: name });
    const renew = () =>
      store.renewLease(name, leaseMs).catch((err) => {
        if (!isFleetError(err, 'NOT_FOUND')) logger.warn('cannot renew lease', { server: name, error: String(err) });
      });
    await renew();
    if (register.report) await link.apply(register.report);
    link.notify();

    const reading = (async () => {
      try {
        for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
          await renew();
          if (r.value.report) await link.apply(r.value.report);
        }
      } catch {
        // the sidecar went away; its lease runs out unless it comes back
      } finally {
        link.out.close();
      }
    })();
    try {
      yield* link.out;
    } finally {
      if (links.get(name) === link) links.delete(name);
      logger.info('sidecar disconnected', { server: name });
      await reading.catch(() => undefined);
    }
  }

  return { impl: { connect }, close: () => stop.abort() };
}

function linkConfig(fleet: FleetSpec | undefined, s: ServerRecord): linkV1.LinkConfig | undefined {
  if (!fleet) return undefined;
  const { health, drain } = fleet;
  return {
    healthPeriodMs: health.periodMs,
    failureThreshold: health.failureThreshold,
    heartbeatIntervalMs: Math.max(100, Math.floor(health.leaseTimeoutMs / 4)),
    leaseMs: health.leaseTimeoutMs,
    flushTimeMs: drain.flushTimeMs,
    // An outdated server, or one told to leave, is replaced after its composition, never reset for another.
    recycle: mayRecycle(s, fleet),
    requireSdkReady: health.readiness === 'SdkReady',
    sdkHealthTimeoutMs: health.sdkHealthTimeoutMs,
    maxDrainTimeMs: drain.maxDrainTimeMs,
  };
}

async function view(store: Store, s: ServerRecord, fleet: FleetSpec | undefined): Promise<linkV1.ConnectResponse> {
  const allocation = s.compositionId ? await store.getAllocation(s.compositionId) : undefined;
  const live = allocation?.serverName === s.name ? allocation : undefined;
  return {
    server: {
      name: s.name,
      fleet: s.fleet,
      state: s.state,
      address: s.address,
      ports: { ...s.ports },
      compositionId: s.compositionId ?? '',
      allocationLive: live !== undefined,
      compositionMetadata: live ? { ...live.metadata } : {},
      compositionToken: live?.token ?? '',
      labels: { ...s.labels },
      annotations: { ...s.annotations },
      stateChangedAtMs: s.stateChangedAt,
    },
    config: linkConfig(fleet, s),
  };
}

/** Valid entries only: the sidecar checks them too, but the fleet trusts no input. */
function validEntries(entries: Record<string, string>, check: (k: string, v: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entries)) {
    try {
      check(k, v);
      out[k] = v;
    } catch {
      // dropped
    }
  }
  return out;
}

const sameMap = (a: Record<string, string>, b: Record<string, string>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);

/**
 * Applies what the sidecar knows to the store. Idempotent: the same report twice changes nothing more.
 * Returns false when part of it must wait (Smelter healthy before the controller recorded where the server runs).
 */
export async function applyReport(store: Store, name: string, report: Report, logger: Logger): Promise<boolean> {
  let s = await store.getServer(name);
  if (!s || isTerminal(s.state)) return true;
  let complete = true;
  const fleet = await store.getFleet(s.fleet);
  const update = async (u: ServerUpdate, why: string) => {
    try {
      s = await store.updateServer(name, u);
      logger.info(why, { server: name, state: s.state, reason: u.reason });
    } catch (err) {
      if (!isFleetError(err, 'FAILED_PRECONDITION') && !isFleetError(err, 'NOT_FOUND')) throw err;
    }
  };

  const labels = mergeSdkEntries(s.labels, validEntries(report.labels, checkSdkLabel));
  const annotations = mergeSdkEntries(s.annotations, validEntries(report.annotations, checkSdkAnnotation));
  if (!sameMap(labels, s.labels) || !sameMap(annotations, s.annotations))
    await update({ labels, annotations }, 'sdk labels set');

  if (report.health === linkV1.SmelterHealth.SMELTER_HEALTH_UNHEALTHY) {
    await update(
      { event: 'HealthFailed', reason: report.healthReason || 'sidecar reports Smelter unhealthy' },
      'server unhealthy',
    );
    return true;
  }
  const wantsSdkReady = fleet?.health.readiness === 'SdkReady';
  if (
    s.state === 'Starting' &&
    report.health === linkV1.SmelterHealth.SMELTER_HEALTH_HEALTHY &&
    (!wantsSdkReady || report.sdkReady) &&
    !report.shutdownRequested
  ) {
    // Never Ready without an address to hand out: the controller records it right after the launch.
    if (s.address === '') complete = false;
    else await update({ event: 'Healthy', reason: '' }, 'server ready');
  }

  const id = s.compositionId;
  if (id && report.finishedCompositionId === id && holdsComposition(s.state)) {
    const allocation = await store.getAllocation(id);
    if (allocation?.serverName === name) {
      await store.release(id).catch((err) => {
        if (!isFleetError(err, 'NOT_FOUND')) throw err;
      });
      await update({ reason: report.finishedReason || 'composition finished' }, 'composition finished');
    }
  }

  if (report.shutdownRequested) {
    const reason = report.shutdownReason || 'shutdown requested';
    if (s.state === 'Starting' || s.state === 'Ready')
      await update({ event: 'Shutdown', reason }, 'server shutting down');
    else if (s.state === 'Allocated') await update({ event: 'Drain', reason }, 'server draining');
  }

  if (id && report.drainedCompositionId === id && s.state === 'Draining') {
    const allocation = await store.getAllocation(id);
    if (allocation?.serverName !== name) {
      // Outdated or told to leave (even if the sidecar reset it under an older config): it stops.
      const recycle = report.recycled && !report.shutdownRequested && mayRecycle(s, fleet);
      await update(
        recycle ? { event: 'Recycle', reason: '' } : { event: 'Shutdown', reason: 'drained' },
        recycle ? 'server recycled' : 'server drained',
      );
    }
  }
  return complete;
}
