import { afterAll, expect, jest, test } from '@jest/globals';
import { startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import { FleetController } from '@smelter-fleet/controller';
import { linkToken, type FleetSpec, type ServerExit } from '@smelter-fleet/core';
import { KubernetesRuntime, PodLabeler, type KubernetesRuntimeOptions } from '@smelter-fleet/kubernetes';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, KWOK_CUSTOM_STATUS, PodRunner, untilServers, type KubeObject } from '@smelter-fleet/testing';
import { bin } from '../helpers.js';
import { describeK8s, useControlPlane } from './harness.js';

jest.setTimeout(120_000);

interface Pod extends KubeObject {
  metadata: KubeObject['metadata'] & {
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: { nodeName?: string; containers: { name: string; ports?: { name: string; hostPort?: number }[] }[] };
  status?: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}
interface Node extends KubeObject {
  status: { addresses: { type: string; address: string }[] };
}
interface Secret extends KubeObject {
  metadata: KubeObject['metadata'] & { ownerReferences?: { kind: string; name: string; uid: string }[] };
  data?: Record<string, string>;
}

const LINK_SECRET = 'runtime-test-link-secret';

describeK8s('KubernetesRuntime on a real control plane', () => {
  const cluster = useControlPlane({ nodes: 2 });
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  const podsPath = () => `/api/v1/namespaces/${cluster.namespace}/pods`;
  const selector = (s: string) => `${podsPath()}?labelSelector=${encodeURIComponent(s)}`;
  const waitPods = (s: string, ready: (pods: Pod[]) => boolean) =>
    cluster.cp.rest.waitForList<Pod>(selector(s), ready, AbortSignal.timeout(60_000));

  async function runtime(
    store: MemoryStore,
    extra: Partial<KubernetesRuntimeOptions> = {},
  ): Promise<KubernetesRuntime> {
    const rt = new KubernetesRuntime({
      kubeConfig: cluster.kubeConfig,
      namespace: cluster.namespace,
      fleets: store,
      linkSecret: LINK_SECRET,
      sidecarImage: 'smelter-fleet:test',
      linkAddress: 'smelter-fleet-allocator:50052',
      hostPortRange: { min: 7000, max: 7009 },
      ...extra,
    });
    await rt.open(AbortSignal.timeout(30_000));
    cleanups.push(() => rt.detach());
    return rt;
  }

  function fleet(name: string, kubernetes?: FleetSpec['template']['kubernetes']): FleetSpec {
    const base = fleetSpec(name, { replicas: 0 });
    return { ...base, template: { ...base.template, ...(kubernetes && { kubernetes }) } };
  }
  const k8s = (over: Partial<NonNullable<FleetSpec['template']['kubernetes']>>) => ({
    mode: 'Sidecar' as const,
    addressType: 'PodIP' as const,
    portPolicy: 'None' as const,
    hostNetwork: false,
    nodeSelector: {},
    ...over,
  });

  test('starts pods that are scheduled onto kwok nodes and run; the address follows the fleet setting', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    await store.putFleet(fleet('podip'));
    await store.putFleet(fleet('external', k8s({ portPolicy: 'Dynamic', addressType: 'ExternalIP' })));
    await store.putFleet(fleet('internal', k8s({ portPolicy: 'Dynamic', addressType: 'InternalIP' })));
    const rt = await runtime(store);
    const launch = (name: string, f: string) => rt.start({ name, fleet: f, command: [], env: {} });
    const [a, b, c] = await Promise.all([
      launch('podip-a1', 'podip'),
      launch('external-b1', 'external'),
      launch('internal-c1', 'internal'),
    ]);

    const pods = await waitPods(
      'smelterfleet.dev/fleet',
      (ps) => ps.filter((p) => p.status?.phase === 'Running').length === 3,
    );
    const pod = (n: string) => pods.find((p) => p.metadata.name === n)!;
    const { items: nodes } = await cluster.cp.rest.list<Node>('/api/v1/nodes');
    const nodeAddress = (node: string, type: string) =>
      nodes.find((n) => n.metadata.name === node)!.status.addresses.find((x) => x.type === type)!.address;

    expect(a.node).toMatch(/^kwok-node-[01]$/);
    expect(a.address).toBe(pod('podip-a1').status!.podIP);
    expect(a.ports).toEqual({ api: 8081, whip_whep: 9000, rtmp: 1935 });

    expect(b.node).toBe(pod('external-b1').spec.nodeName);
    expect(b.address).toBe(nodeAddress(b.node, 'ExternalIP'));
    expect(b.address).toMatch(/^127\.1\.0\./);
    expect(c.address).toBe(nodeAddress(c.node, 'InternalIP'));
    // Host ports: whip_whep and rtmp from the range, two pods never on the same slot while another is free.
    expect([b.ports.whip_whep, b.ports.rtmp, c.ports.whip_whep, c.ports.rtmp].sort()).toEqual([7000, 7001, 7002, 7003]);
    expect(b.ports.api).toBe(8081);
    // The API port is not a host port: the gateway reaches it on the pod IP, whatever the media address.
    expect(a.apiHost).toBeUndefined();
    expect(b.apiHost).toBe(pod('external-b1').status!.podIP);
    expect(c.apiHost).toBe(pod(c.name).status!.podIP);

    expect(pod('podip-a1').metadata.labels).toMatchObject({
      'smelterfleet.dev/fleet': 'podip',
      'smelterfleet.dev/server': 'podip-a1',
      'smelterfleet.dev/state': 'Starting',
    });
    expect(pod('podip-a1').metadata.labels!['smelterfleet.dev/template-hash']).toMatch(/^[0-9a-f]{10}$/);

    // The link token lives in a Secret owned by the pod, never in the pod spec.
    const secret = await cluster.cp.rest.get<Secret>(`/api/v1/namespaces/${cluster.namespace}/secrets/podip-a1-link`);
    expect(Buffer.from(secret.data!.token!, 'base64').toString()).toBe(linkToken(LINK_SECRET, 'podip-a1'));
    expect(secret.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Pod', name: 'podip-a1', uid: pod('podip-a1').metadata.uid }),
    ]);
    expect(JSON.stringify(pod('podip-a1').spec)).not.toContain(linkToken(LINK_SECRET, 'podip-a1'));

    expect(
      rt
        .list()
        .map((s) => s.name)
        .sort(),
    ).toEqual(['external-b1', 'internal-c1', 'podip-a1']);

    // stop deletes the pod and resolves once it is gone: an expected exit.
    const exits: ServerExit[] = [];
    const off = rt.onExit((e) => exits.push(e));
    await rt.stop('podip-a1');
    expect(rt.list().map((s) => s.name)).not.toContain('podip-a1');
    await expect(cluster.cp.rest.get(`${podsPath()}/podip-a1`)).rejects.toMatchObject({ statusCode: 404 });
    expect(exits).toEqual([expect.objectContaining({ name: 'podip-a1', expected: true })]);

    // A pod deleted by someone else: an unexpected exit.
    const external = new Promise<ServerExit>((resolve) => rt.onExit((e) => e.name === 'external-b1' && resolve(e)));
    await cluster.cp.rest.delete(`${podsPath()}/external-b1`);
    expect(await external).toMatchObject({ name: 'external-b1', expected: false });
    off();

    // The garbage collector removes the Secret with its pod.
    await cluster.cp.rest.waitForList(
      `/api/v1/namespaces/${cluster.namespace}/secrets?labelSelector=${encodeURIComponent('smelterfleet.dev/server=podip-a1')}`,
      (items) => items.length === 0,
      AbortSignal.timeout(60_000),
    );
    await rt.stop('internal-c1', { graceMs: 0 });
  });

  test('a pod no node can take fails its launch with the scheduler reason', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    await store.putFleet(fleet('nogpu', k8s({ nodeSelector: { gpu: 'a100' } })));
    const rt = await runtime(store, { scheduleTimeoutMs: 5000 });
    const err = await rt.start({ name: 'nogpu-x1', fleet: 'nogpu', command: [], env: {} }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(String((err as Error).message)).toMatch(
      /not scheduled with an address within 5000 ms: 0\/2 nodes are available/,
    );
    await rt.stop('nogpu-x1', { graceMs: 0 });
  });

  test('servers become Ready through their real sidecars; the labeler marks the allocated pod protected', async () => {
    const store = new MemoryStore();
    cleanups.push(() => store.close());
    const allocator: AllocatorServer = await startAllocatorServer({ store, linkSecret: LINK_SECRET });
    cleanups.push(() => allocator.close({ force: true }));
    const rt = await runtime(store, { linkAddress: allocator.address, podAnnotations: KWOK_CUSTOM_STATUS });
    const runner = new PodRunner({
      rest: cluster.cp.rest,
      namespace: cluster.namespace,
      labelSelector: 'smelterfleet.dev/fleet=live',
      sidecarCommand: [process.execPath, bin, 'sidecar', '--health-period', '200ms'],
      smelterCommand: [process.execPath, emulatorMainPath],
    });
    await runner.start();
    cleanups.push(() => runner.stop());
    const stop = new AbortController();
    const controller = new FleetController({ store, runtime: rt, stopServersOnExit: false });
    const labeler = new PodLabeler({
      kubeConfig: cluster.kubeConfig,
      namespace: cluster.namespace,
      store,
      currentPod: (n) => rt.pod(n),
    });
    const loops = Promise.all([controller.run(stop.signal), labeler.run(stop.signal)]);
    cleanups.push(async () => {
      stop.abort();
      await loops;
    });

    await store.putFleet({ ...fleetSpec('live', { replicas: 2 }) });
    const servers = await untilServers(store, (all) => all.filter((s) => s.state === 'Ready').length === 2);
    expect(new Set(servers.map((s) => s.node)).size).toBeGreaterThanOrEqual(1);
    for (const s of servers) expect(s.node).toMatch(/^kwok-node-[01]$/);
    // The pods' Ready condition comes from their own readiness probe, run against the real sidecar.
    await waitPods(
      'smelterfleet.dev/fleet=live',
      (ps) =>
        ps.length === 2 &&
        ps.every((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')),
    );

    const allocation = await store.allocate({ fleet: 'live', compositionId: 'c1', matchLabels: {}, metadata: {} });
    const marked = await waitPods(
      'smelterfleet.dev/fleet=live',
      (ps) =>
        ps.some(
          (p) =>
            p.metadata.name === allocation.serverName &&
            p.metadata.labels?.['smelterfleet.dev/state'] === 'Allocated' &&
            p.metadata.annotations?.['cluster-autoscaler.kubernetes.io/safe-to-evict'] === 'false',
        ) &&
        ps.some(
          (p) =>
            p.metadata.name !== allocation.serverName &&
            p.metadata.labels?.['smelterfleet.dev/state'] === 'Ready' &&
            p.metadata.annotations?.['cluster-autoscaler.kubernetes.io/safe-to-evict'] === 'true',
        ),
    );
    expect(marked).toHaveLength(2);
    // The PodDisruptionBudget's selector finds exactly the allocated pod.
    const allocated = await cluster.cp.rest.list<Pod>(selector('smelterfleet.dev/state=Allocated'));
    expect(allocated.items.map((p) => p.metadata.name)).toEqual([allocation.serverName]);

    // Released: recycled to Ready, protection lifted.
    await store.release('c1');
    await waitPods('smelterfleet.dev/fleet=live', (ps) =>
      ps.every(
        (p) =>
          p.metadata.labels?.['smelterfleet.dev/state'] === 'Ready' &&
          p.metadata.annotations?.['cluster-autoscaler.kubernetes.io/safe-to-evict'] === 'true',
      ),
    );

    // An allocated pod deleted from outside (kubectl delete, a node drain): its preStop tells the fleet, which drains
    // the server, and holds the pod until the composition is over.
    const held = await store.allocate({ fleet: 'live', compositionId: 'c2', matchLabels: {}, metadata: {} });
    await cluster.cp.rest.delete(`${podsPath()}/${held.serverName}`);
    await untilServers(store, (all) => all.some((s) => s.name === held.serverName && s.state === 'Draining'));
    const terminating = await cluster.cp.rest.get<Pod>(`${podsPath()}/${held.serverName}`);
    expect(terminating.metadata.deletionTimestamp).toBeDefined();
    expect(runner.running()).toContain(held.serverName);
    expect(runner.hooks.filter((h) => h.pod === held.serverName && h.hook === 'preStop')).toEqual([]);
    await store.release('c2');
    await waitPods(`smelterfleet.dev/server=${held.serverName}`, (ps) => ps.length === 0);
    expect(runner.hooks).toContainEqual({ pod: held.serverName, hook: 'preStop', ok: true });
    // The readiness probe (the pod's own script) ran against the real sidecar and passed.
    expect(runner.hooks).toContainEqual({ pod: held.serverName, hook: 'readiness', ok: true });
    await untilServers(
      store,
      (all) => all.filter((s) => s.state === 'Ready').length === 2 && !all.some((s) => s.name === held.serverName),
    );

    // Scaled to zero: the pods are deleted; the runner stops their processes through the preStop path.
    await store.putFleet({ ...fleetSpec('live', { replicas: 0 }) });
    await waitPods('smelterfleet.dev/fleet=live', (ps) => ps.length === 0);
    await untilServers(store, (all) => all.length === 0);
    expect(runner.hooks.filter((h) => h.hook === 'preStop' && !h.ok)).toEqual([]);
    expect(labeler.patchCount).toBeGreaterThanOrEqual(4);
  });
});
