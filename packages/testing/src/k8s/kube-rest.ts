import type { IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';

/** How to reach a kube-apiserver with a client certificate (PEM strings). */
export interface KubeRestOptions {
  /** `https://127.0.0.1:<port>` */
  server: string;
  ca: string;
  cert: string;
  key: string;
  /** Most sockets kept open to the server. Default 32. */
  maxSockets?: number;
  /** Value of the User-Agent header (shows in the API server's metrics). Default `smelter-fleet-testing`. */
  userAgent?: string;
}

/** A Kubernetes API error (the server's `Status` body), with the HTTP status code. */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export interface RequestOptions {
  /** JSON body (objects are serialised; strings sent as they are). */
  body?: unknown;
  /** Content-Type of the body. Default `application/json` (use `application/merge-patch+json` etc. for PATCH). */
  contentType?: string;
  /** Answer as text instead of parsed JSON. Default false. */
  text?: boolean;
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

/** A Kubernetes object as JSON; only the metadata every object has is typed. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

interface KubeList<T> {
  metadata: { resourceVersion: string; continue?: string };
  items: T[];
}

/**
 * A small REST client for kube-apiserver over HTTPS with a client certificate: the harness's own client
 * (it has no dependency on @kubernetes/client-node), also used by benchmarks that count API requests.
 */
export class KubeRest {
  readonly server: string;
  private readonly agent: Agent;
  private readonly userAgent: string;

  constructor(options: KubeRestOptions) {
    this.server = options.server.replace(/\/$/, '');
    this.userAgent = options.userAgent ?? 'smelter-fleet-testing';
    this.agent = new Agent({
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      keepAlive: true,
      maxSockets: options.maxSockets ?? 32,
    });
  }

  /** One request; resolves with the parsed JSON answer, rejects with KubeApiError on a non-2xx status. */
  request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const body =
      options.body === undefined
        ? undefined
        : typeof options.body === 'string'
          ? options.body
          : JSON.stringify(options.body);
    return new Promise<T>((resolve, reject) => {
      const req = httpsRequest(
        this.server + path,
        {
          method,
          agent: this.agent,
          signal: options.signal,
          headers: {
            accept: 'application/json',
            'user-agent': this.userAgent,
            ...(body !== undefined
              ? { 'content-type': options.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) }
              : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              let parsed: { reason?: string; message?: string } | undefined;
              try {
                parsed = JSON.parse(text) as { reason?: string; message?: string };
              } catch {
                parsed = undefined;
              }
              reject(
                new KubeApiError(
                  status,
                  parsed?.reason ?? String(status),
                  `${method} ${path}: ${status} ${parsed?.message ?? text.slice(0, 500)}`,
                  parsed ?? text,
                ),
              );
              return;
            }
            if (options.text) return resolve(text as T);
            try {
              resolve((text ? JSON.parse(text) : undefined) as T);
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  get<T = KubeObject>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('GET', path, { signal });
  }

  create<T = KubeObject>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('POST', path, { body, signal });
  }

  replace<T = KubeObject>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('PUT', path, { body, signal });
  }

  /** JSON merge patch. */
  patch<T = KubeObject>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('PATCH', path, { body, contentType: 'application/merge-patch+json', signal });
  }

  /** Server-side apply of one object (field manager `smelter-fleet-testing`, forced). */
  apply<T = KubeObject>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('PATCH', `${path}?fieldManager=smelter-fleet-testing&force=true`, {
      body,
      contentType: 'application/apply-patch+yaml',
      signal,
    });
  }

  delete<T = unknown>(path: string, signal?: AbortSignal): Promise<T> {
    return this.request<T>('DELETE', path, { signal });
  }

  /** Every item of a collection (follows `continue`), and the list's resourceVersion. */
  async list<T = KubeObject>(path: string, signal?: AbortSignal): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await this.get<KubeList<T>>(
        `${path}${sep}limit=500${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`,
        signal,
      );
      items.push(...page.items);
      resourceVersion = page.metadata.resourceVersion;
      cont = page.metadata.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  /** Watch events of a collection from `resourceVersion` until the signal aborts or the server ends the watch. */
  async *watch<T = KubeObject>(
    path: string,
    resourceVersion: string,
    signal: AbortSignal,
  ): AsyncGenerator<WatchEvent<T>, void, undefined> {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${this.server}${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${resourceVersion}`;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpsRequest(url, {
        agent: this.agent,
        signal,
        headers: { accept: 'application/json', 'user-agent': this.userAgent },
      });
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    if ((res.statusCode ?? 0) >= 300) {
      res.resume();
      throw new KubeApiError(
        res.statusCode ?? 0,
        String(res.statusCode),
        `watch ${path}: ${res.statusCode}`,
        undefined,
      );
    }
    const lines = createInterface({ input: res });
    try {
      for await (const line of lines) {
        if (!line) continue;
        yield JSON.parse(line) as WatchEvent<T>;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      res.destroy();
    }
  }

  /**
   * Resolves with the collection's items once `ready(items)` holds: a list, then a watch that re-checks on
   * every change (an awaited event, no polling); re-lists when the watch ends. Rejects when the signal aborts.
   */
  async waitForList<T extends KubeObject = KubeObject>(
    path: string,
    ready: (items: T[]) => boolean,
    signal: AbortSignal,
  ): Promise<T[]> {
    for (;;) {
      signal.throwIfAborted();
      const listed = await this.list<T>(path, signal);
      const byName = new Map(listed.items.map((o) => [`${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
      if (ready([...byName.values()])) return [...byName.values()];
      const ac = new AbortController();
      const stop = () => ac.abort(signal.reason);
      signal.addEventListener('abort', stop, { once: true });
      try {
        for await (const ev of this.watch<T>(path, listed.resourceVersion, ac.signal)) {
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'ERROR') break; // e.g. 410 Gone: list again
          const key = `${ev.object.metadata.namespace ?? ''}/${ev.object.metadata.name}`;
          if (ev.type === 'DELETED') byName.delete(key);
          else byName.set(key, ev.object);
          if (ready([...byName.values()])) return [...byName.values()];
        }
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (!(err instanceof Error) || !/ECONNRESET|socket hang up|aborted/i.test(err.message)) throw err;
      } finally {
        signal.removeEventListener('abort', stop);
        ac.abort();
      }
    }
  }

  /** Closes the kept-alive sockets. */
  close(): void {
    this.agent.destroy();
  }
}
