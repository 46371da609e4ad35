import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import {
  backoffMs,
  silentLogger,
  type BackoffOptions,
  type Logger,
  type ServerRecord,
  type ServerState,
  type Store,
} from '@smelter-fleet/core';
import { KubeHttpError, kubeRequest } from './informer.js';
import { SAFE_TO_EVICT_ANNOTATION, STATE_LABEL } from './pod.js';

export interface PodLabelerOptions {
  kubeConfig: KubeConfig;
  /** Namespace of the server pods. Required. */
  namespace: string;
  /** The store whose change feed the labels follow. Required. */
  store: Pick<Store, 'watch' | 'listServers'>;
  /** The cached pod of a server (KubernetesRuntime.pod): patches that would change nothing are skipped. Default none. */
  currentPod?: (name: string) => V1Pod | undefined;
  /** Patches in flight at once. Default 8. */
  concurrency?: number;
  /** Delays before retrying a failed patch. Default: 200 ms doubling up to 10 s. */
  backoff?: BackoffOptions;
  logger?: Logger;
}

/** What a pod's metadata should say for a server. */
export interface PodMarks {
  state: ServerState;
  /** A composition is running on it: the cluster autoscaler must not evict it. */
  protect: boolean;
}

/** Pure: the marks of a server. Allocated, and Draining with its composition still on, are protected. */
export function podMarks(server: Pick<ServerRecord, 'state' | 'compositionId'>): PodMarks {
  const protect = server.state === 'Allocated' || (server.state === 'Draining' && server.compositionId !== undefined);
  return { state: server.state, protect };
}

/** Whether a pod already carries the marks. */
export function podHasMarks(pod: V1Pod, marks: PodMarks): boolean {
  return (
    pod.metadata?.labels?.[STATE_LABEL] === marks.state &&
    pod.metadata?.annotations?.[SAFE_TO_EVICT_ANNOTATION] === (marks.protect ? 'false' : 'true')
  );
}

/** The merge patch giving a pod its marks. */
export function marksPatch(marks: PodMarks): object {
  return {
    metadata: {
      labels: { [STATE_LABEL]: marks.state },
      annotations: { [SAFE_TO_EVICT_ANNOTATION]: marks.protect ? 'false' : 'true' },
    },
  };
}

/**
 * Keeps each server pod's `smelterfleet.dev/state` label on its server's state, and its
 * `cluster-autoscaler.kubernetes.io/safe-to-evict` annotation "false" while a composition runs on it ("true"
 * otherwise: Sidecar pods have an emptyDir, which alone would make the autoscaler keep them). Follows the store's
 * change feed, after the fact: allocation never waits for it. Bursts coalesce (a server patched once for its latest
 * state); a failed patch is retried with back-off; a pod not there (yet, or any more) is skipped.
 */
export class PodLabeler {
  private readonly logger: Logger;
  /** Latest known record per server (by version). */
  private readonly want = new Map<string, { marks: PodMarks; version: number }>();
  private readonly dirty = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly failures = new Map<string, number>();
  /** Marks last patched onto each pod: the pod's truth from then on (a cached pod may lag behind our own patch). */
  private readonly sent = new Map<string, PodMarks>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private patches = 0;
  private signal: AbortSignal | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly options: PodLabelerOptions) {
    this.logger = (options.logger ?? silentLogger).child({ component: 'pod-labeler' });
  }

  /** Merge patches sent so far (for tests and benchmarks). */
  get patchCount(): number {
    return this.patches;
  }

  /** Follows the store until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const feed = this.options.store.watch(signal)[Symbol.asyncIterator]();
    // Subscribed before listing, so nothing falls between; versions keep the newest of the two.
    const first = feed.next();
    for (const s of await this.options.store.listServers()) this.note(s, false);
    try {
      let next = first;
      for (;;) {
        const r = await next;
        if (r.done || signal.aborted) break;
        if (r.value.type === 'server') this.note(r.value.server, r.value.removed);
        next = feed.next();
      }
    } finally {
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
    }
  }

  /** Resolves when no patch is pending or in flight (for tests). */
  async drained(): Promise<void> {
    while (this.dirty.size > 0 || this.inFlight.size > 0 || this.timers.size > 0)
      await new Promise<void>((resolve) => (this.idle = resolve));
  }

  private note(server: ServerRecord, removed: boolean): void {
    const known = this.want.get(server.name);
    if (removed) {
      this.want.delete(server.name);
      this.dirty.delete(server.name);
      this.sent.delete(server.name);
      return;
    }
    if (known && known.version > server.version) return;
    this.want.set(server.name, { marks: podMarks(server), version: server.version });
    this.dirty.add(server.name);
    this.pump();
  }

  private pump(): void {
    const limit = this.options.concurrency ?? 8;
    for (const name of this.dirty) {
      if (this.inFlight.size >= limit) break;
      if (this.inFlight.has(name)) continue; // patched again once the one in flight ends
      this.dirty.delete(name);
      this.inFlight.add(name);
      void this.patch(name).finally(() => {
        this.inFlight.delete(name);
        this.pump();
      });
    }
    if (this.dirty.size === 0 && this.inFlight.size === 0 && this.timers.size === 0) this.idle?.();
  }

  private async patch(name: string): Promise<void> {
    const want = this.want.get(name);
    if (!want || this.signal?.aborted) return;
    const sent = this.sent.get(name);
    if (sent && sent.state === want.marks.state && sent.protect === want.marks.protect) return;
    const pod = sent ? undefined : this.options.currentPod?.(name);
    if (pod && podHasMarks(pod, want.marks)) return;
    try {
      await kubeRequest(this.options.kubeConfig, 'PATCH', `/api/v1/namespaces/${this.options.namespace}/pods/${name}`, {
        body: marksPatch(want.marks),
        contentType: 'application/merge-patch+json',
        ...(this.signal && { signal: this.signal }),
      });
      this.patches++;
      this.failures.delete(name);
      if (this.want.has(name)) this.sent.set(name, want.marks);
    } catch (err) {
      if (this.signal?.aborted) return;
      if (err instanceof KubeHttpError && err.statusCode === 404) return; // no pod (yet, or any more)
      const attempt = this.failures.get(name) ?? 0;
      this.failures.set(name, attempt + 1);
      const delayMs = backoffMs(attempt, this.options.backoff ?? { initialMs: 200, maxMs: 10_000 });
      this.logger.warn('pod label patch failed; retrying', { server: name, error: String(err), delayMs });
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.want.has(name)) this.dirty.add(name);
        this.pump();
      }, delayMs);
      this.timers.add(timer);
    }
  }
}
