// The Informer against an API server that ends watches after a second and compacts etcd every second: a watch
// resumed from an old resourceVersion gets 410 Gone, and the informer must list again and stay right.
import { afterEach, expect, it, jest } from '@jest/globals';
import { Informer, kubeRequest } from '@smelter-fleet/kubernetes';
import type { KubeObject } from '@smelter-fleet/testing';
import { describeK8s, useControlPlane } from './harness.js';

jest.setTimeout(90_000);

interface List {
  metadata: { resourceVersion?: string };
  items: KubeObject[];
}

describeK8s('Informer: relist on 410 Gone', () => {
  const cluster = useControlPlane({
    controllerManager: false,
    scheduler: false,
    kwok: false,
    namespace: 'relist',
    extraArgs: {
      // Watches straight from etcd, which forgets old revisions every second; every watch ends within 1-2 s.
      'kube-apiserver': ['--watch-cache=false', '--etcd-compaction-interval=1s', '--min-request-timeout=1'],
    },
  });
  const stop = new AbortController();
  afterEach(() => stop.abort());

  it('lists again after 410 Gone and keeps following changes', async () => {
    const path = `/api/v1/namespaces/${cluster.namespace}/configmaps`;
    let lists = 0;
    let onList: (() => void) | undefined;
    const informer = new Informer<KubeObject>({
      kubeConfig: cluster.kubeConfig,
      path,
      list: async (signal) => {
        const list = await kubeRequest<List>(cluster.kubeConfig, 'GET', path, { signal });
        lists++;
        onList?.();
        return list as never;
      },
    });
    const relisted = new Promise<void>((resolve) => (onList = () => lists >= 2 && resolve()));
    await cluster.cp.rest.create(path, { metadata: { name: 'before' } });
    await informer.start(stop.signal);
    expect(informer.get('before', cluster.namespace)).toBeDefined();

    // Changes elsewhere move etcd's revision on; compaction drops the one the informer would resume from.
    await cluster.cp.rest.create('/api/v1/namespaces', { metadata: { name: 'churn' } });
    let done = false;
    void relisted.then(() => (done = true));
    for (let i = 0; !done; i++) {
      await cluster.cp.rest.create('/api/v1/namespaces/churn/configmaps', { metadata: { name: `c${i}` } });
      await Promise.race([relisted, new Promise((r) => setTimeout(r, 200))]); // paces the churn; the wait is on the relist
    }
    expect(lists).toBeGreaterThanOrEqual(2);

    // Still following: a change after the relist arrives, and the cache holds exactly what is there.
    const added = new Promise<void>((resolve) => informer.on('add', (o) => o.metadata.name === 'after' && resolve()));
    await cluster.cp.rest.create(path, { metadata: { name: 'after' } });
    await added;
    const names = informer
      .list(cluster.namespace)
      .map((o) => o.metadata.name)
      .filter((n) => n !== 'kube-root-ca.crt')
      .sort();
    expect(names).toEqual(['after', 'before']);
    stop.abort();
    await informer.stopped();
  });
});
