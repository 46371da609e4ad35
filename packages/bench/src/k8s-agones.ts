// The Agones-style allocation path, for comparison: servers are API objects (one ConfigMap per server, labelled
// with its state); an allocator keeps an informer cache of them, picks a Ready one and writes it Allocated with its
// resourceVersion (optimistic concurrency), retrying on 409 Conflict with another pick.
import type { KubeApiError, KubeObject, KubeRest } from '../../testing/dist/k8s/kube-rest.js';
import { summarize, type Summary } from './stats.js';

const STATE_LABEL = 'smelterfleet.dev/state';

interface ServerObject extends KubeObject {
  metadata: KubeObject['metadata'] & { labels?: Record<string, string>; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

export interface AgonesStyleResult extends Summary {
  /** PUTs answered 409 Conflict (each retried with another pick). */
  conflicts: number;
  /** Picks that found no Ready server in the cache. */
  empty: number;
}

/** Creates `count` Ready server objects in `namespace` (64 requests in flight). */
export async function seedServerObjects(rest: KubeRest, namespace: string, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < count) {
        const i = next++;
        await rest.create(`/api/v1/namespaces/${namespace}/configmaps`, {
          metadata: { name: `server-${String(i).padStart(5, '0')}`, labels: { [STATE_LABEL]: 'Ready' } },
          data: { address: `10.2.${Math.floor(i / 250)}.${(i % 250) + 1}`, api: '8081' },
        });
      }
    }),
  );
}

/** One allocator replica's informer: a list, then a watch keeping the cache current. */
async function startInformer(rest: KubeRest, path: string) {
  const cache = new Map<string, ServerObject>();
  const ready = new Set<string>();
  const put = (o: ServerObject) => {
    cache.set(o.metadata.name, o);
    if (o.metadata.labels?.[STATE_LABEL] === 'Ready') ready.add(o.metadata.name);
    else ready.delete(o.metadata.name);
  };
  const listed = await rest.list<ServerObject>(path);
  listed.items.forEach(put);
  const watching = new AbortController();
  const watcher = (async () => {
    let rv = listed.resourceVersion;
    while (!watching.signal.aborted) {
      try {
        for await (const ev of rest.watch<ServerObject>(path, rv, watching.signal)) {
          if (ev.type === 'ERROR') throw new Error('watch expired');
          rv = ev.object.metadata.resourceVersion ?? rv;
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'DELETED') {
            cache.delete(ev.object.metadata.name);
            ready.delete(ev.object.metadata.name);
          } else put(ev.object);
        }
      } catch {
        if (watching.signal.aborted) return;
      }
    }
  })();
  return {
    cache,
    ready,
    put,
    async stop() {
      watching.abort();
      await watcher;
    },
  };
}

export interface AgonesStyleOptions {
  /** Allocator replicas, each with its own informer cache (conflicts come from their races). */
  replicas: number;
  /** Clients in all, spread over the replicas. */
  concurrency: number;
  durationMs: number;
}

/**
 * `concurrency` clients allocate back to back for `durationMs` through the API server, spread over `replicas`
 * allocators with their own informer caches: pick a random Ready object from the cache (random, not Agones' packed
 * order: fewer conflicts, in the alternative's favour), PUT it Allocated with its resourceVersion, on 409 pick again.
 * A replica never hands one object to two of its own clients. Latency is from the first pick to the successful PUT.
 */
export async function agonesStyleAllocations(
  rest: KubeRest,
  namespace: string,
  options: AgonesStyleOptions,
): Promise<AgonesStyleResult> {
  const path = `/api/v1/namespaces/${namespace}/configmaps?labelSelector=${encodeURIComponent(STATE_LABEL)}`;
  const informers = await Promise.all(Array.from({ length: options.replicas }, () => startInformer(rest, path)));
  const latencies: number[] = [];
  let conflicts = 0;
  let empty = 0;
  let errors = 0;
  let seq = 0;
  const end = performance.now() + options.durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async (_, client) => {
      const { cache, ready, put } = informers[client % informers.length]!;
      while (performance.now() < end) {
        const started = performance.now();
        const compositionId = `agones-${seq++}`;
        for (;;) {
          if (ready.size === 0) {
            empty++;
            break;
          }
          const names = [...ready];
          const name = names[Math.floor(Math.random() * names.length)]!;
          const current = cache.get(name)!;
          ready.delete(name);
          const updated: ServerObject = {
            ...current,
            metadata: {
              ...current.metadata,
              labels: { ...current.metadata.labels, [STATE_LABEL]: 'Allocated' },
              annotations: { ...current.metadata.annotations, 'smelterfleet.dev/composition': compositionId },
            },
          };
          try {
            put(await rest.replace<ServerObject>(`/api/v1/namespaces/${namespace}/configmaps/${name}`, updated));
            latencies.push(performance.now() - started);
            break;
          } catch (err) {
            if ((err as KubeApiError).statusCode === 409) {
              conflicts++;
              continue;
            }
            errors++;
            break;
          }
        }
        if (ready.size === 0) break;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(informers.map((i) => i.stop()));
  return { ...summarize(latencies, seconds, errors), conflicts, empty };
}
