import { createHash } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { request as httpRequest, type RequestOptions } from 'node:http';
import {
  KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { backoffMs, silentLogger, type BackoffOptions, type Logger } from '@smelter-fleet/core';

export type InformerVerb = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Collection path watched, e.g. `/api/v1/namespaces/default/pods`. */
  path: string;
  /**
   * Lists the collection. Default: a plain GET of `path` (with the selectors), so listed objects have the same
   * shape as watched ones (plain JSON, timestamps as strings), unlike the typed clients' deserialised objects.
   */
  list?: (signal: AbortSignal) => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Delays between restarts after an error (list or watch failed). Default: 200 ms doubling up to 10 s. */
  backoff?: BackoffOptions;
  logger?: Logger;
}

/**
 * An informer that keeps going: client-node's ListWatch (a cache fed by a list then a watch; it relists by itself on
 * 410 Gone) restarted with back-off after any error, which ListWatch alone gives up on. Objects are plain JSON.
 * Callbacks run for every change the cache sees; `start` resolves once the first list is in the cache.
 */
export class Informer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private readonly logger: Logger;
  private readonly backoff: BackoffOptions;
  private readonly listeners: Record<InformerVerb, Set<(obj: T) => void>> = {
    add: new Set(),
    update: new Set(),
    delete: new Set(),
  };
  private readonly errorListeners = new Set<(err: unknown) => void>();
  private failures = 0;
  private syncedOnce = false;
  private onSynced: (() => void) | undefined;
  private listAbort = new AbortController();
  private signal: AbortSignal | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly options: InformerOptions<T>) {
    this.logger = (options.logger ?? silentLogger).child({ informer: options.path });
    this.backoff = options.backoff ?? { initialMs: 200, maxMs: 10_000 };
    const list = options.list ?? ((signal: AbortSignal) => listJson<T>(options, signal));
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const result = await list(this.listAbort.signal);
      this.failures = 0;
      if (!this.syncedOnce) {
        this.syncedOnce = true;
        // After ListWatch has filled its cache from this list (it does so synchronously after our promise).
        queueMicrotask(() => setImmediate(() => this.onSynced?.()));
      }
      return result;
    };
    this.lw = new ListWatch<T>(
      options.path,
      new Watch(options.kubeConfig),
      listFn,
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    for (const verb of ['add', 'update', 'delete'] as const)
      this.lw.on(verb, (obj: T) => {
        for (const l of this.listeners[verb]) {
          try {
            l(obj);
          } catch (err) {
            this.logger.error('informer callback failed', { verb, error: String(err) });
          }
        }
      });
    this.lw.on('error', (err?: unknown) => this.failed(err));
  }

  /** Calls `cb` for each object added, updated or deleted (after a relist too). Returns an unsubscribe function. */
  on(verb: InformerVerb, cb: (obj: T) => void): () => void {
    this.listeners[verb].add(cb);
    return () => this.listeners[verb].delete(cb);
  }

  /** Calls `cb` with every error before the informer restarts (for logs and tests). Returns an unsubscribe function. */
  onError(cb: (err: unknown) => void): () => void {
    this.errorListeners.add(cb);
    return () => this.errorListeners.delete(cb);
  }

  /** Whether the first list has reached the cache. */
  get synced(): boolean {
    return this.syncedOnce;
  }

  /**
   * Starts listing and watching until `signal` aborts; resolves once the first list is cached (retrying with back-off
   * until then). Rejects only if `signal` aborts first.
   */
  start(signal: AbortSignal): Promise<void> {
    if (this.signal) throw new Error('informer already started');
    this.signal = signal;
    let stopped!: () => void;
    this.done = new Promise<void>((resolve) => (stopped = resolve));
    const synced = new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(abortReason(signal));
      this.onSynced = resolve;
      signal.addEventListener('abort', () => reject(abortReason(signal)), { once: true });
    });
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(this.restartTimer);
        this.listAbort.abort();
        // A start under way may open a watch after stop(): stop again once it has settled.
        void (this.starting ?? Promise.resolve())
          .catch(() => undefined)
          .then(() => this.lw.stop())
          .finally(stopped);
      },
      { once: true },
    );
    if (!signal.aborted) this.launch();
    return synced;
  }

  /** Resolves once the informer has stopped (its watch closed) after the start signal aborted. */
  stopped(): Promise<void> {
    return this.done;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace);
  }

  private launch(): void {
    const run = this.lw.start().catch((err: unknown) => this.failed(err));
    this.starting = run;
  }

  private failed(err: unknown): void {
    if (!this.signal || this.signal.aborted) return;
    for (const l of this.errorListeners) l(err);
    const delayMs = backoffMs(this.failures++, this.backoff);
    this.logger.warn('list/watch failed; restarting', { error: describe(err), delayMs });
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.signal?.aborted) return;
      this.listAbort = new AbortController();
      this.launch();
    }, delayMs);
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

function describe(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { statusCode?: number; code?: number | string; message?: string };
    const status = e.statusCode ?? e.code;
    // ApiException messages carry the response headers and body: keep the first line.
    const msg = (e.message ?? String(err)).split('\n')[0];
    return status !== undefined ? `${status}: ${msg}` : (msg ?? String(err));
  }
  return String(err);
}

/** An error with the HTTP status of a failed Kubernetes request, like ListWatch expects (`statusCode`). */
export class KubeHttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'KubeHttpError';
  }
}

/**
 * One request to the API server with the kubeconfig's credentials; the body is JSON. Resolves with the decoded JSON
 * answer; a non-2xx answer rejects with KubeHttpError (its Status message, never the credentials).
 */
export async function kubeRequest<R = unknown>(
  kubeConfig: KubeConfig,
  method: string,
  path: string,
  options: {
    body?: unknown;
    contentType?: string;
    signal?: AbortSignal;
    query?: Record<string, string>;
    /** Connection pool: `lease` keeps leader election off the pool bulk work (hundreds of pod creations) queues on. */
    pool?: 'default' | 'lease';
  } = {},
): Promise<R> {
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig: no current cluster');
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  for (const [k, v] of Object.entries(options.query ?? {})) url.searchParams.set(k, v);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const opts: RequestOptions = {
    method,
    headers: {
      accept: 'application/json',
      ...(payload !== undefined && {
        'content-type': options.contentType ?? 'application/json',
        'content-length': Buffer.byteLength(payload),
      }),
    },
  };
  await kubeConfig.applyToHTTPSOptions(opts);
  // client-node makes a new Agent per call (a TLS handshake per request): keep-alive connections, bounded, instead.
  if (url.protocol === 'https:' && !kubeConfig.getCurrentCluster()?.proxyUrl)
    opts.agent = pooledAgent(kubeConfig, opts, options.pool ?? 'default');
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<R>((resolve, reject) => {
    const req = send(url, { ...opts, ...(options.signal && { signal: options.signal }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(json as R);
        const message = (json as { message?: string } | undefined)?.message ?? (text.slice(0, 200) || `HTTP ${status}`);
        reject(new KubeHttpError(status, `${method} ${path}: ${status} ${message}`, json));
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const POOL_SOCKETS = { default: 32, lease: 2 } as const;
const agents = new WeakMap<KubeConfig, Map<string, Agent>>();

/** One keep-alive Agent per kubeconfig, TLS identity and pool (a rotated client certificate gets a new one). */
function pooledAgent(kubeConfig: KubeConfig, opts: RequestOptions, pool: keyof typeof POOL_SOCKETS): Agent {
  const tls = opts as RequestOptions & { ca?: unknown; cert?: unknown; key?: unknown; rejectUnauthorized?: boolean };
  const id = createHash('sha256')
    .update(
      JSON.stringify([
        pool,
        String(tls.ca ?? ''),
        String(tls.cert ?? ''),
        String(tls.key ?? ''),
        tls.rejectUnauthorized,
      ]),
    )
    .digest('hex');
  let byId = agents.get(kubeConfig);
  if (!byId) agents.set(kubeConfig, (byId = new Map()));
  let agent = byId.get(id);
  if (!agent) {
    const old = opts.agent as Agent & { options?: object };
    agent = new Agent({ ...(old?.options ?? {}), keepAlive: true, maxSockets: POOL_SOCKETS[pool] });
    byId.set(id, agent);
  }
  return agent;
}

function listJson<T extends KubernetesObject>(
  options: InformerOptions<T>,
  signal: AbortSignal,
): Promise<KubernetesListObject<T>> {
  const query: Record<string, string> = {};
  if (options.labelSelector) query.labelSelector = options.labelSelector;
  if (options.fieldSelector) query.fieldSelector = options.fieldSelector;
  return kubeRequest<KubernetesListObject<T>>(options.kubeConfig, 'GET', options.path, { query, signal });
}

export type { KubeConfig };

/**
 * The client configuration: the kubeconfig file given, else the in-cluster one (the pod's service account) when
 * `inCluster`. Throws when neither applies or the file cannot be read.
 */
export function loadKubeConfig(options: { kubeconfigPath?: string | undefined; inCluster?: boolean }): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfigPath) kc.loadFromFile(options.kubeconfigPath);
  else if (options.inCluster) kc.loadFromCluster();
  else throw new Error('no kubeconfig given and not running in a pod');
  if (!kc.getCurrentCluster()) throw new Error('the kubeconfig names no current cluster');
  return kc;
}
