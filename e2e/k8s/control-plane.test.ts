import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect, test } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  alive,
  ensureK8sBins,
  KubeApiError,
  KubeRest,
  makeCa,
  issueCert,
  type KubeObject,
} from '@smelter-fleet/testing';
import { describeK8s, useControlPlane } from './harness.js';

interface Pod extends KubeObject {
  spec: { nodeName?: string };
  status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}
interface Node extends KubeObject {
  status: {
    addresses: { type: string; address: string }[];
    allocatable: Record<string, string>;
    conditions?: { type: string; status: string }[];
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (err: unknown) => err,
  );
}

describeK8s('test control plane', () => {
  const cluster = useControlPlane({ nodes: 3 });

  test('kwok nodes are Ready, with their addresses and allocatable resources', async () => {
    const { items } = await cluster.cp.rest.list<Node>('/api/v1/nodes');
    expect(items.map((n) => n.metadata.name).sort()).toEqual(['kwok-node-0', 'kwok-node-1', 'kwok-node-2']);
    for (const node of items) {
      expect(node.status.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
      expect(node.status.addresses.find((a) => a.type === 'ExternalIP')?.address).toMatch(/^127\.1\.0\.[123]$/);
      expect(node.status.allocatable).toMatchObject({ cpu: '32', pods: '110' });
    }
    // The kubeconfig file works with @kubernetes/client-node.
    const core = cluster.kubeConfig.makeApiClient(CoreV1Api);
    const nodes = await core.listNode();
    expect(nodes.items).toHaveLength(3);
  }, 30_000);

  test('a plain pod is scheduled onto a kwok node and becomes Running and Ready', async () => {
    const ns = cluster.namespace;
    await cluster.cp.rest.create(`/api/v1/namespaces/${ns}/pods`, {
      metadata: { name: 'plain' },
      spec: {
        containers: [{ name: 'main', image: 'example.invalid/none:1', resources: { requests: { cpu: '1' } } }],
      },
    });
    const [pod] = await cluster.cp.rest.waitForList<Pod>(
      `/api/v1/namespaces/${ns}/pods?fieldSelector=metadata.name%3Dplain`,
      (pods) =>
        pods.some(
          (p) =>
            p.status?.phase === 'Running' &&
            p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        ),
      AbortSignal.timeout(60_000),
    );
    expect(pod?.spec.nodeName).toMatch(/^kwok-node-[012]$/);
    expect(pod?.status?.podIP).toMatch(/^10\./);
  }, 60_000);

  test('RBAC: a certificate without bindings is forbidden until a RoleBinding allows it; a foreign CA is not authenticated', async () => {
    const ns = cluster.namespace;
    const { cert } = cluster.cp.userKubeconfig('nobody', ['smelter-fleet:testers']);
    const nobody = new KubeRest({ server: cluster.cp.server, ca: cluster.cp.ca.cert, ...cert });
    try {
      const denied = await rejection(nobody.list(`/api/v1/namespaces/${ns}/pods`));
      expect(denied).toBeInstanceOf(KubeApiError);
      expect((denied as KubeApiError).statusCode).toBe(403);
      expect((denied as KubeApiError).message).toMatch(/User "nobody" cannot list resource "pods"/);

      await cluster.cp.rest.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
        metadata: { name: 'pod-reader' },
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }],
      });
      await cluster.cp.rest.create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
        metadata: { name: 'testers-read-pods' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'smelter-fleet:testers' }],
      });
      const { items } = await nobody.list(`/api/v1/namespaces/${ns}/pods`);
      expect(items.map((p) => p.metadata.name)).toContain('plain');
      // Still nothing beyond the Role.
      const stillDenied = await rejection(nobody.list('/api/v1/nodes'));
      expect((stillDenied as KubeApiError).statusCode).toBe(403);
    } finally {
      nobody.close();
    }

    const otherCa = makeCa('not the cluster CA');
    const stranger = new KubeRest({
      server: cluster.cp.server,
      ca: cluster.cp.ca.cert,
      ...issueCert(otherCa, { commonName: 'admin', organizations: ['system:masters'], usage: 'client' }),
    });
    try {
      const unauthenticated = await rejection(stranger.list('/api/v1/nodes'));
      expect((unauthenticated as KubeApiError).statusCode).toBe(401);
    } finally {
      stranger.close();
    }
  }, 30_000);

  test('stop() ends every component and removes the directory', async () => {
    const pids = Object.values(cluster.cp.pids());
    expect(pids).toHaveLength(5);
    expect(pids.every(alive)).toBe(true);
    await cluster.cp.stop();
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(cluster.cp.dir)).toBe(false);
  }, 30_000);
});

describeK8s('a control plane whose test process dies', () => {
  test('is killed and removed by its reaper', async () => {
    const script = fileURLToPath(new URL('./fixtures/orphan-control-plane.mjs', import.meta.url));
    const binDir = process.env.SMELTER_FLEET_K8S_BIN_DIR ?? ensureK8sBins();
    const child = spawn(process.execPath, [script, binDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let started: { pids: number[]; dir: string } | undefined;
    for await (const line of createInterface({ input: child.stdout })) {
      started = JSON.parse(line) as { pids: number[]; dir: string };
      break;
    }
    expect(started?.pids).toHaveLength(2);
    expect(started!.pids.every(alive)).toBe(true);
    expect(existsSync(started!.dir)).toBe(true);

    child.kill('SIGKILL');
    await exited;
    // Not our children: their end cannot be awaited, only observed.
    const deadline = Date.now() + 20_000;
    while ((started!.pids.some(alive) || existsSync(started!.dir)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(started!.pids.filter(alive)).toEqual([]);
    expect(existsSync(started!.dir)).toBe(false);
  }, 120_000);
});
