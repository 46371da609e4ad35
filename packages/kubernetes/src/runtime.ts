import type { KubeConfig, V1Node, V1OwnerReference, V1Pod } from '@kubernetes/client-node';
import {
  FleetError,
  linkToken,
  silentLogger,
  templateHash,
  type FleetSpec,
  type LaunchedServer,
  type Logger,
  type Runtime,
  type ServerExit,
  type ServerLaunch,
} from '@smelter-fleet/core';
import { Informer, KubeHttpError, kubeRequest } from './informer.js';
import {
  ADDRESS_TYPE_ANNOTATION,
  buildPod,
  FLEET_LABEL,
  hostPortCount,
  hostPortsOf,
  kubernetesTemplate,
  LINK_TOKEN_KEY,
  linkSecretName,
  pickHostPorts,
  podAddress,
  podPorts,
  SERVER_LABEL,
  type PodTemplateOptions,
} from './pod.js';

export const FLEET_GROUP = 'smelterfleet.dev';
export const FLEET_VERSION = 'v1alpha1';

export interface KubernetesRuntimeOptions extends PodTemplateOptions {
  /** Credentials and API server (built by the entry point: in-cluster or a kubeconfig file). Required. */
  kubeConfig: KubeConfig;
  /** Where the fleet specs come from (the store the controller runs on). Required. */
  fleets: { getFleet(name: string): Promise<FleetSpec | undefined> };
  /** The installation's link secret: each pod's link token is derived from it. Secret: never logged. Required. */
  linkSecret: string;
  /** Host ports of fleets with portPolicy Dynamic or hostNetwork. Default 7000-8000 (as Agones). */
  hostPortRange?: { min: number; max: number };
  /**
   * Owner reference of a fleet's pods. Default: the SmelterFleet resource of that name, read on each launch
   * (none when it does not exist).
   */
  owner?: (fleet: string, signal?: AbortSignal) => Promise<V1OwnerReference | undefined>;
  /** A pod not scheduled with an address this long after creation fails its launch, ms. Default 300000. */
  scheduleTimeoutMs?: number;
  logger?: Logger;
}

interface Waiter {
  check: () => void;
}

/**
 * Runs each server as a Pod (see buildPod) through the API server. `start` creates the pod (and its link Secret) and
 * resolves once it is scheduled with an address; `stop` deletes it with the pod's own grace period (the fleet's drain
 * limit: its preStop lets a composition end, then SIGINTs Smelter) and resolves once it is gone; `onExit` reports a
 * pod deleted or whose Smelter container ended; `list` reads a pod informer (restarted with back-off, relisting on 410).
 * Call `open` before use. Nothing here is on the allocation path.
 */
export class KubernetesRuntime implements Runtime {
  private readonly pods: Informer<V1Pod>;
  private readonly nodes: Informer<V1Node>;
  private readonly logger: Logger;
  private readonly listeners = new Set<(exit: ServerExit) => void>();
  private readonly waiters = new Set<Waiter>();
  /** Pods the runtime was asked to stop (their exit is expected). */
  private readonly stopping = new Set<string>();
  /** uids whose exit was reported. */
  private readonly exited = new Set<string>();
  /** Host ports of pods being created, until the informer holds them. */
  private readonly reserved = new Map<string, number[]>();
  private readonly abort = new AbortController();
  private readonly namespace: string;
  private readonly podsPath: string;

  constructor(private readonly options: KubernetesRuntimeOptions) {
    this.logger = (options.logger ?? silentLogger).child({ component: 'kubernetes-runtime' });
    this.namespace = options.namespace;
    this.podsPath = `/api/v1/namespaces/${options.namespace}/pods`;
    this.pods = new Informer<V1Pod>({
      kubeConfig: options.kubeConfig,
      path: this.podsPath,
      labelSelector: FLEET_LABEL,
      logger: this.logger,
    });
    this.nodes = new Informer<V1Node>({ kubeConfig: options.kubeConfig, path: '/api/v1/nodes', logger: this.logger });
    this.pods.on('add', (p) => this.seen(p));
    this.pods.on('update', (p) => this.seen(p));
    this.pods.on('delete', (p) => this.gone(p));
    this.nodes.on('add', () => this.poke());
  }

  /** Starts the pod and node informers; resolves once both have listed. */
  async open(signal?: AbortSignal): Promise<void> {
    const both = AbortSignal.any([this.abort.signal, ...(signal ? [signal] : [])]);
    await Promise.all(
      [this.pods.start(this.abort.signal), this.nodes.start(this.abort.signal)].map((p) => race(p, both)),
    );
  }

  /** The cached pod of a server (for the labeler: skips patches that change nothing). */
  pod(name: string): V1Pod | undefined {
    return this.pods.get(name, this.namespace);
  }

  async start(launch: ServerLaunch, signal?: AbortSignal): Promise<LaunchedServer> {
    signal?.throwIfAborted();
    const { name } = launch;
    if (name.length > 63)
      throw new FleetError('INVALID_ARGUMENT', `server name "${name}" is longer than 63 characters (a label value)`, {
        field: 'name',
      });
    const fleet = await this.options.fleets.getFleet(launch.fleet);
    if (!fleet) throw new FleetError('NOT_FOUND', `fleet "${launch.fleet}" not found`);
    const k = kubernetesTemplate(fleet);
    const count = hostPortCount(k);
    let hostPorts: number[] | undefined;
    if (count > 0) {
      const used = [...this.pods.list(this.namespace).map(hostPortsOf), ...this.reserved.values()];
      const range = this.options.hostPortRange ?? { min: 7000, max: 8000 };
      hostPorts = pickHostPorts(used, range, count);
      if (hostPorts.length === 0)
        throw new FleetError('RESOURCE_EXHAUSTED', `host port range ${range.min}-${range.max} holds no ${count} ports`);
      this.reserved.set(name, hostPorts);
    }
    try {
      const owner = await (this.options.owner ?? ((f, s) => this.fleetOwner(f, s)))(fleet.name, signal);
      const pod = buildPod(
        {
          name,
          fleet,
          templateHash: templateHash(fleet.template),
          ...(owner && { owner }),
          ...(hostPorts && { hostPorts }),
        },
        this.options,
      );
      let created: V1Pod;
      try {
        created = await kubeRequest<V1Pod>(this.options.kubeConfig, 'POST', this.podsPath, {
          body: pod,
          ...(signal && { signal }),
        });
      } catch (err) {
        if (!(err instanceof KubeHttpError && err.statusCode === 409)) throw launchError(name, err);
        // Created by an earlier attempt (a controller restart): take it if it is this server's pod.
        created = await kubeRequest<V1Pod>(this.options.kubeConfig, 'GET', `${this.podsPath}/${name}`);
        if (created.metadata?.labels?.[SERVER_LABEL] !== name)
          throw new FleetError('ALREADY_EXISTS', `pod "${name}" exists and is not a server pod`, { cause: err });
      }
      await this.createLinkSecret(created, signal);
      return await this.waitScheduled(name, created.metadata!.uid!, k.addressType, signal);
    } finally {
      this.reserved.delete(name);
    }
  }

  async stop(name: string, options: { graceMs?: number } = {}): Promise<void> {
    this.stopping.add(name);
    try {
      // graceMs 0 (a launch that failed) deletes at once; otherwise the pod's own grace period (the fleet's drain
      // limit) applies: its preStop lets a composition end, then SIGINTs Smelter, so no SIGTERM wait is wasted.
      const query: Record<string, string> = options.graceMs === 0 ? { gracePeriodSeconds: '0' } : {};
      try {
        await kubeRequest(this.options.kubeConfig, 'DELETE', `${this.podsPath}/${name}`, { query });
      } catch (err) {
        if (!(err instanceof KubeHttpError && err.statusCode === 404)) throw err;
      }
      await this.until(() => this.pods.get(name, this.namespace) === undefined, this.abort.signal);
    } finally {
      this.stopping.delete(name);
    }
  }

  onExit(listener: (exit: ServerExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): LaunchedServer[] {
    const out: LaunchedServer[] = [];
    for (const pod of this.pods.list(this.namespace)) {
      if (pod.metadata?.uid && this.exited.has(pod.metadata.uid)) continue;
      const launched = this.launched(pod);
      if (launched) out.push(launched);
    }
    return out;
  }

  /** Deletes every server pod (the Runtime contract), then stops watching. A controller on Kubernetes uses `detach`. */
  async close(): Promise<void> {
    const names = this.pods.list(this.namespace).map((p) => p.metadata!.name!);
    await Promise.allSettled(names.map((n) => this.stop(n)));
    await this.detach();
  }

  /** Stops watching and leaves the pods running (for a controller handing over to another replica). */
  async detach(): Promise<void> {
    this.abort.abort();
    for (const w of this.waiters) w.check();
    await Promise.all([this.pods.stopped(), this.nodes.stopped()]);
  }

  private launched(pod: V1Pod): LaunchedServer | undefined {
    const name = pod.metadata?.name;
    const node = pod.spec?.nodeName;
    // A terminating pod still runs (its preStop may be waiting for a composition): it is listed until it is gone.
    if (!name || !node) return undefined;
    const fleet = pod.metadata?.labels?.[FLEET_LABEL];
    const addressType = addressTypeOf(pod);
    const address = podAddress(pod, addressType, this.nodes.get(node));
    if (!address || !fleet) return undefined;
    return { name, address, node, ports: podPorts(pod), ...apiHostOf(pod, addressType) };
  }

  private async waitScheduled(
    name: string,
    uid: string,
    addressType: 'ExternalIP' | 'InternalIP' | 'PodIP',
    signal: AbortSignal | undefined,
  ): Promise<LaunchedServer> {
    const timeoutMs = this.options.scheduleTimeoutMs ?? 300_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    let result: LaunchedServer | undefined;
    let failure: Error | undefined;
    await this.until(
      () => {
        const pod = this.pods.get(name, this.namespace);
        if (!pod || pod.metadata?.uid !== uid) {
          // Not in the cache yet, or deleted (then a later uid, or nothing, is there).
          if (this.exited.has(uid))
            failure = new FleetError('FAILED_PRECONDITION', `pod "${name}" went away while starting`);
          return failure !== undefined;
        }
        const exit = exitOf(pod);
        if (exit) {
          failure = new FleetError(
            'FAILED_PRECONDITION',
            `pod "${name}" ended while starting: ${exit.lastOutput.join('; ')}`,
          );
          return true;
        }
        if (!pod.spec?.nodeName) return false;
        const address = podAddress(pod, addressType, this.nodes.get(pod.spec.nodeName));
        // The gateway reaches the API port on the pod IP: wait for it when the media address is the node's.
        if (!address || (addressType !== 'PodIP' && !pod.status?.podIP)) return false;
        result = { name, address, node: pod.spec.nodeName, ports: podPorts(pod), ...apiHostOf(pod, addressType) };
        return true;
      },
      AbortSignal.any([timeout, this.abort.signal, ...(signal ? [signal] : [])]),
    ).catch((err: unknown) => {
      if (!timeout.aborted) throw err;
      const pod = this.pods.get(name, this.namespace);
      const why = pod?.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status !== 'True')?.message;
      throw new FleetError(
        'DEADLINE_EXCEEDED',
        `pod "${name}" not scheduled with an address within ${timeoutMs} ms${why ? `: ${why}` : ''}`,
      );
    });
    if (failure) throw failure;
    return result!;
  }

  /** The pod's link token, in a Secret the pod owns (so it goes with the pod), never in the pod spec. */
  private async createLinkSecret(pod: V1Pod, signal?: AbortSignal): Promise<void> {
    const name = pod.metadata!.name!;
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: linkSecretName(name),
        namespace: this.namespace,
        labels: { [FLEET_LABEL]: pod.metadata!.labels![FLEET_LABEL]!, [SERVER_LABEL]: name },
        ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name, uid: pod.metadata!.uid! }],
      },
      data: { [LINK_TOKEN_KEY]: Buffer.from(linkToken(this.options.linkSecret, name)).toString('base64') },
    };
    try {
      await kubeRequest(this.options.kubeConfig, 'POST', `/api/v1/namespaces/${this.namespace}/secrets`, {
        body,
        ...(signal && { signal }),
      });
    } catch (err) {
      // Left by an earlier attempt for this very pod: the token is the same (derived from the name).
      if (!(err instanceof KubeHttpError && err.statusCode === 409)) throw launchError(name, err);
    }
  }

  private async fleetOwner(fleet: string, signal?: AbortSignal): Promise<V1OwnerReference | undefined> {
    const path = `/apis/${FLEET_GROUP}/${FLEET_VERSION}/namespaces/${this.namespace}/smelterfleets/${fleet}`;
    try {
      const cr = await kubeRequest<{ metadata?: { uid?: string } }>(this.options.kubeConfig, 'GET', path, {
        ...(signal && { signal }),
      });
      const uid = cr.metadata?.uid;
      return uid
        ? { apiVersion: `${FLEET_GROUP}/${FLEET_VERSION}`, kind: 'SmelterFleet', name: fleet, uid, controller: true }
        : undefined;
    } catch (err) {
      // No such resource (a fleet from elsewhere, or the CRD not installed): the pods have no owner.
      if (err instanceof KubeHttpError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  private seen(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    const exit = exitOf(pod);
    if (uid && exit && !this.exited.has(uid)) this.report(uid, exit);
    this.poke();
  }

  private gone(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    const name = pod.metadata?.name;
    if (uid && name && !this.exited.has(uid))
      this.report(uid, {
        name,
        code: null,
        signal: null,
        expected: false,
        lastOutput: [pod.status?.reason ? `pod deleted (${pod.status.reason})` : 'pod deleted'],
      });
    // Keep the set small: a deleted uid never comes back.
    if (uid) setTimeout(() => this.exited.delete(uid), 60_000).unref();
    this.poke();
  }

  private report(uid: string, exit: ServerExit): void {
    this.exited.add(uid);
    const full = { ...exit, expected: this.stopping.has(exit.name) };
    (full.expected ? this.logger.debug : this.logger.warn).call(this.logger, 'server pod ended', {
      server: exit.name,
      expected: full.expected,
      why: exit.lastOutput.at(-1),
    });
    for (const l of this.listeners) l(full);
  }

  private poke(): void {
    for (const w of this.waiters) w.check();
  }

  /** Resolves once `done()` holds, checked now and after every informer change. Rejects when `signal` aborts. */
  private until(done: () => boolean, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        check: () => {
          if (signal.aborted) {
            finish();
            reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
          } else if (done()) {
            finish();
            resolve();
          }
        },
      };
      const onAbort = () => waiter.check();
      const finish = () => {
        this.waiters.delete(waiter);
        signal.removeEventListener('abort', onAbort);
      };
      this.waiters.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      waiter.check();
    });
  }
}

/** A pod whose Smelter ended, or that failed or completed, as a ServerExit (expected is filled by the caller). */
export function exitOf(pod: V1Pod): ServerExit | undefined {
  const name = pod.metadata?.name;
  if (!name) return undefined;
  const smelter = pod.status?.containerStatuses?.find((c) => c.name === 'smelter');
  const terminated = smelter?.state?.terminated;
  if (terminated) {
    const why = [terminated.reason, terminated.message].filter(Boolean).join(': ');
    return {
      name,
      code: terminated.exitCode ?? null,
      signal: null,
      expected: false,
      lastOutput: [`smelter container terminated${why ? ` (${why})` : ''}, exit code ${terminated.exitCode}`],
    };
  }
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded')
    return {
      name,
      code: null,
      signal: null,
      expected: false,
      lastOutput: [`pod ${phase}${pod.status?.reason ? ` (${pod.status.reason}: ${pod.status.message ?? ''})` : ''}`],
    };
  return undefined;
}

/** The API port is never a host port: with a node address for media, the gateway reaches it on the pod IP. */
function apiHostOf(pod: V1Pod, addressType: 'ExternalIP' | 'InternalIP' | 'PodIP'): { apiHost?: string } {
  const podIP = pod.status?.podIP;
  return addressType !== 'PodIP' && podIP ? { apiHost: podIP } : {};
}

/** Reads the address type back from a pod: host ports mean a node address (as the fleet default), else the pod IP. */
function addressTypeOf(pod: V1Pod): 'ExternalIP' | 'InternalIP' | 'PodIP' {
  const annotated = pod.metadata?.annotations?.[ADDRESS_TYPE_ANNOTATION];
  if (annotated === 'ExternalIP' || annotated === 'InternalIP' || annotated === 'PodIP') return annotated;
  return hostPortsOf(pod).length > 0 ? 'ExternalIP' : 'PodIP';
}

function launchError(name: string, err: unknown): Error {
  if (err instanceof KubeHttpError) {
    const code = err.statusCode === 422 || err.statusCode === 400 ? 'INVALID_ARGUMENT' : 'UNAVAILABLE';
    return new FleetError(code, `cannot create pod "${name}": ${err.message}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

function race<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
