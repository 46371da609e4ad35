// `smelter-fleet controller --kubernetes` on a real control plane: two controller processes (one leader on a Lease),
// a real Redis, a real allocator process, real sidecars and Smelter emulators run for kwok's pods by the PodRunner.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { parseYamlObjects } from '@smelter-fleet/kubernetes';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { KWOK_CUSTOM_STATUS, PodRunner, RedisServer, repoRoot, type KubeObject } from '@smelter-fleet/testing';
import { allocatorAuth, bin, cli, start, stopAll, type Running } from '../helpers.js';
import { describeK8s, useControlPlane } from './harness.js';

jest.setTimeout(180_000);

const API = '/apis/smelterfleet.dev/v1alpha1';
const RBAC = '/apis/rbac.authorization.k8s.io/v1';
const LEASE = 'smelter-fleet-controller';

interface Pod extends KubeObject {
  metadata: KubeObject['metadata'] & {
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: { nodeName?: string };
  status?: { conditions?: { type: string; status: string }[] };
}
type Fleet = KubeObject & {
  metadata: KubeObject['metadata'] & { generation?: number };
  spec?: { replicas?: number };
  status?: {
    replicas?: number;
    readyReplicas?: number;
    allocatedReplicas?: number;
    drainingReplicas?: number;
    updatedReplicas?: number;
    observedGeneration?: number;
    selector?: string;
    conditions?: { type: string; status: string }[];
  };
};
type Event = KubeObject & { involvedObject: { kind: string; name: string }; reason: string; type: string };

const state = (p: Pod) => p.metadata.labels?.['smelterfleet.dev/state'];
const hash = (p: Pod) => p.metadata.labels?.['smelterfleet.dev/template-hash'];
const podReady = (p: Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

describeK8s('smelter-fleet controller --kubernetes on a real control plane', () => {
  // Registered before the control plane's own afterAll, so it runs first: processes stop while the API server is up.
  afterAll(async () => {
    await stopAll(processes);
    await runner?.stop();
    await redis?.kill();
  }, 60_000);
  const cluster = useControlPlane({ nodes: 2, namespace: 'ctl' });
  const ns = () => cluster.namespace;
  const fleetPath = () => `${API}/namespaces/${ns()}/smelterfleets`;
  const podsOf = (fleet: string) =>
    `/api/v1/namespaces/${ns()}/pods?labelSelector=${encodeURIComponent(`smelterfleet.dev/fleet=${fleet}`)}`;
  const waitPods = (fleet: string, ok: (pods: Pod[]) => boolean) =>
    cluster.cp.rest.waitForList<Pod>(podsOf(fleet), ok, AbortSignal.timeout(120_000));
  const waitFleet = async (name: string, ok: (f: Fleet) => boolean) => {
    const match = (f: Fleet) => f.metadata.name === name && ok(f);
    return (
      await cluster.cp.rest.waitForList<Fleet>(fleetPath(), (l) => l.some(match), AbortSignal.timeout(60_000))
    ).find(match)!;
  };
  const lease = () =>
    cluster.cp.rest.get<KubeObject & { spec: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${ns()}/leases/${LEASE}`,
    );

  /**
   * The chart's RBAC (helm template of templates/rbac.yaml), applied: the controllers run as its controller service
   * account, so they get exactly the least privilege the chart grants. Returns that account's kubeconfig.
   */
  async function chartControllerAccount(): Promise<string> {
    const home = mkdtempSync(join(tmpdir(), 'sf-helm-'));
    const yaml = await new Promise<string>((resolve, reject) =>
      execFile(
        join(cluster.cp.binDir, 'helm'),
        ['template', 'sf', join(repoRoot, 'deploy/helm/smelter-fleet'), '--namespace', ns()].concat([
          '--kube-version',
          '1.37.2',
          '--show-only',
          'templates/rbac.yaml',
        ]),
        { env: { PATH: process.env.PATH ?? '', HOME: home, HELM_CACHE_HOME: home, HELM_CONFIG_HOME: home } },
        (err, stdout, stderr) => (err ? reject(new Error(`helm template: ${stderr || err.message}`)) : resolve(stdout)),
      ),
    );
    const paths: Record<string, string> = {
      ServiceAccount: `/api/v1/namespaces/${ns()}/serviceaccounts`,
      Role: `${RBAC}/namespaces/${ns()}/roles`,
      RoleBinding: `${RBAC}/namespaces/${ns()}/rolebindings`,
      ClusterRole: `${RBAC}/clusterroles`,
      ClusterRoleBinding: `${RBAC}/clusterrolebindings`,
    };
    let account = '';
    for (const doc of parseYamlObjects(yaml) as KubeObject[]) {
      await cluster.cp.rest.create(paths[doc.kind!]!, doc);
      if (doc.kind === 'RoleBinding' && doc.metadata.name.endsWith('-controller'))
        account = (doc as unknown as { subjects: { name: string }[] }).subjects[0]!.name;
    }
    expect(account).toBe('sf-smelter-fleet-controller');
    return cluster.cp.userKubeconfig(`system:serviceaccount:${ns()}:${account}`, [
      'system:serviceaccounts',
      `system:serviceaccounts:${ns()}`,
      'system:authenticated',
    ]).path;
  }

  let redis: RedisServer;
  let runner: PodRunner;
  let allocatorAddress = '';
  const processes: Running[] = [];
  const controllers = new Map<string, Running>();
  let allocated = '';
  let allocatedUid = '';
  /** The server of composition c2 (autoscaler test). */
  let held = '';

  beforeAll(async () => {
    for (const file of readdirSync(join(repoRoot, 'deploy/crds'))) {
      const [crd] = parseYamlObjects(readFileSync(join(repoRoot, 'deploy/crds', file), 'utf8'));
      await cluster.cp.rest.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    }
    await cluster.cp.rest.waitForList<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      (crds) =>
        crds.filter((c) => c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')).length >=
        2,
      AbortSignal.timeout(30_000),
    );
    const controllerUser = await chartControllerAccount();
    redis = await RedisServer.start();
    const allocator = start([
      'allocator',
      '--store',
      redis.url,
      '--allocator-port',
      '0',
      ...allocatorAuth,
      '--link-port',
      '0',
    ]);
    processes.push(allocator);
    allocatorAddress = (await allocator.waitFor(/listening on (\S+) \(gRPC\)/)).match[1]!;
    const link = (await allocator.waitFor(/sidecar link on (\S+)/)).match[1]!;
    runner = new PodRunner({
      rest: cluster.cp.rest,
      namespace: ns(),
      labelSelector: 'smelterfleet.dev/fleet',
      sidecarCommand: [process.execPath, bin, 'sidecar', '--health-period', '200ms'],
      smelterCommand: [process.execPath, emulatorMainPath],
    });
    await runner.start();
    for (const name of ['controller-a', 'controller-b']) {
      const c = start(
        [
          'controller',
          '--kubernetes',
          '--kubeconfig',
          controllerUser,
          '--namespace',
          ns(),
          '--store',
          redis.url,
          '--link',
          link,
          '--pod-annotation',
          `kwok.x-k8s.io/status=${KWOK_CUSTOM_STATUS['kwok.x-k8s.io/status']}`,
          // Short enough for a quick fail-over, long enough for a loaded machine (renewals every 500 ms).
          '--lease-duration',
          '6s',
          '--renew-deadline',
          '4s',
          '--retry-period',
          '500ms',
          '--log-level',
          'warn',
        ],
        { POD_NAME: name },
      );
      processes.push(c);
      controllers.set(name, c);
      await c.waitFor(/campaigning for lease/);
    }
  }, 120_000);

  it('creates pods for a SmelterFleet; they become Ready on kwok nodes; the status subresource counts them', async () => {
    await cluster.cp.rest.create(fleetPath(), {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleet',
      metadata: { name: 'shows' },
      spec: {
        replicas: 3,
        drain: { flushTime: '0s', maxDrainTime: '10m' },
        health: { period: '200ms' },
        template: { metadata: { labels: { tier: 'live' } } },
      },
    });
    const pods = await waitPods(
      'shows',
      (ps) => ps.length === 3 && ps.every((p) => podReady(p) && state(p) === 'Ready'),
    );
    for (const p of pods) expect(p.spec.nodeName).toMatch(/^kwok-node-[01]$/);
    const fleet = await waitFleet('shows', (f) => f.status?.readyReplicas === 3);
    expect(fleet.status).toMatchObject({
      replicas: 3,
      readyReplicas: 3,
      allocatedReplicas: 0,
      drainingReplicas: 0,
      updatedReplicas: 3,
      observedGeneration: fleet.metadata.generation,
      selector: 'smelterfleet.dev/fleet=shows',
    });
    expect(fleet.status?.conditions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'Accepted', status: 'True' }),
        expect.objectContaining({ type: 'Available', status: 'True' }),
      ]),
    );
  });

  it('allocates through the allocator; the pod is labelled Allocated and protected', async () => {
    const r = await cli([
      'allocate',
      '--allocator',
      allocatorAddress,
      '--fleet',
      'shows',
      '--composition',
      'c1',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    allocated = (JSON.parse(r.stdout) as { server_name: string }).server_name;
    const pods = await waitPods('shows', (ps) =>
      ps.some(
        (p) =>
          p.metadata.name === allocated &&
          state(p) === 'Allocated' &&
          p.metadata.annotations?.['cluster-autoscaler.kubernetes.io/safe-to-evict'] === 'false',
      ),
    );
    allocatedUid = pods.find((p) => p.metadata.name === allocated)!.metadata.uid;
    await waitFleet('shows', (f) => f.status?.allocatedReplicas === 1 && f.status?.readyReplicas === 2);
  });

  it('scales down through the scale subresource: only Ready pods are deleted', async () => {
    await cluster.cp.rest.patch(`${fleetPath()}/shows/scale`, { spec: { replicas: 1 } });
    const pods = await waitPods('shows', (ps) => ps.length === 1);
    expect(pods[0]!.metadata).toMatchObject({ name: allocated, uid: allocatedUid });
    expect(state(pods[0]!)).toBe('Allocated');
    await waitFleet('shows', (f) => f.status?.replicas === 1 && f.status?.readyReplicas === 0);
  });

  it('rolls out a new template around the allocated pod, which drains and goes only when its composition ends', async () => {
    const before = hash((await waitPods('shows', (ps) => ps.length === 1))[0]!);
    await cluster.cp.rest.patch(`${fleetPath()}/shows`, {
      spec: { replicas: 2, template: { spec: { env: { SMELTER_OUTPUT_FRAMERATE: '25' } } } },
    });
    // The allocated pod counts among the 2 replicas while it drains: one new pod beside it.
    const mid = await waitPods(
      'shows',
      (ps) =>
        ps.filter((p) => hash(p) !== before && state(p) === 'Ready' && podReady(p)).length === 1 &&
        ps.some((p) => p.metadata.name === allocated && state(p) === 'Draining'),
    );
    expect(mid.find((p) => p.metadata.name === allocated)?.metadata.uid).toBe(allocatedUid);
    expect(mid.find((p) => p.metadata.name === allocated)?.metadata.deletionTimestamp).toBeUndefined();
    await waitFleet('shows', (f) => f.status?.drainingReplicas === 1 && f.status?.updatedReplicas === 1);

    const r = await cli(['release', '--allocator', allocatorAddress, '--composition', 'c1']);
    expect(r.code).toBe(0);
    const after = await waitPods(
      'shows',
      (ps) => ps.length === 2 && ps.every((p) => hash(p) !== before && state(p) === 'Ready' && podReady(p)),
    );
    expect(after.map((p) => p.metadata.name)).not.toContain(allocated);
  });

  it('fails over: the leader is SIGKILLed, the other replica takes the Lease and reconciles the next change', async () => {
    const leader = (await lease()).spec.holderIdentity!;
    expect([...controllers.keys()]).toContain(leader);
    const other = [...controllers.keys()].find((n) => n !== leader)!;
    const killed = controllers.get(leader)!;
    const mark = controllers.get(other)!.lines.length;
    killed.child.kill('SIGKILL');
    await killed.exited;
    await cluster.cp.rest.patch(`${fleetPath()}/shows`, { spec: { replicas: 3 } });
    await controllers.get(other)!.waitFor(/^leading: reconciling namespace/, mark, 60_000);
    expect((await lease()).spec.holderIdentity).toBe(other);
    await waitPods('shows', (ps) => ps.length === 3 && ps.every((p) => podReady(p) && state(p) === 'Ready'));
    await waitFleet(
      'shows',
      (f) => f.status?.readyReplicas === 3 && f.status?.observedGeneration === f.metadata.generation,
    );
  });

  it('wrote Kubernetes Events for scaling and draining on the SmelterFleet and its pods', async () => {
    const events = (await cluster.cp.rest.list<Event>(`/api/v1/namespaces/${ns()}/events`)).items;
    const onFleet = events.filter((e) => e.involvedObject.kind === 'SmelterFleet' && e.involvedObject.name === 'shows');
    expect(onFleet.map((e) => e.reason)).toEqual(expect.arrayContaining(['ScaledUp', 'ScaledDown', 'RolloutProgress']));
    const onPod = events.filter((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === allocated);
    expect(onPod.map((e) => e.reason)).toContain('Draining');
  });

  it('runs a SmelterFleetAutoscaler: its decisions reach the fleet through the scale subresource', async () => {
    await cluster.cp.rest.create(`${API}/namespaces/${ns()}/smelterfleetautoscalers`, {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleetAutoscaler',
      metadata: { name: 'shows-buffer' },
      spec: {
        fleetName: 'shows',
        behavior: { scaleDownStabilization: '0s' },
        policy: { type: 'Buffer', buffer: { bufferSize: 1, minReplicas: 1, maxReplicas: 5 } },
      },
    });
    // Nothing allocated: one spare server.
    await waitFleet('shows', (f) => f.spec?.replicas === 1);
    await waitPods('shows', (ps) => ps.length === 1 && ps.every((p) => podReady(p) && state(p) === 'Ready'));
    // One allocated: one more spare.
    const r = await cli([
      'allocate',
      '--allocator',
      allocatorAddress,
      '--fleet',
      'shows',
      '--composition',
      'c2',
      '--json',
    ]);
    expect(r.code).toBe(0);
    held = (JSON.parse(r.stdout) as { server_name: string }).server_name;
    await waitFleet('shows', (f) => f.spec?.replicas === 2);
    await waitPods('shows', (ps) => ps.length === 2 && ps.every((p) => podReady(p)));
    const [scaler] = await cluster.cp.rest.waitForList<KubeObject & { status?: { desiredReplicas?: number } }>(
      `${API}/namespaces/${ns()}/smelterfleetautoscalers`,
      (items) => items.some((a) => a.status?.desiredReplicas === 2),
      AbortSignal.timeout(30_000),
    );
    expect(scaler?.status).toMatchObject({ desiredReplicas: 2, currentReplicas: 2 });
  });

  it('deleting the SmelterFleet drains it: Ready pods go, the allocated pod and the resource stay until released', async () => {
    await cluster.cp.rest.delete(`${API}/namespaces/${ns()}/smelterfleetautoscalers/shows-buffer`);
    await cluster.cp.rest.delete(`${fleetPath()}/shows`);
    // The pods are owned by the SmelterFleet: without the finalizer the garbage collector would take them all.
    const left = await waitPods('shows', (ps) => ps.length === 1);
    expect(left[0]!.metadata.name).toBe(held);
    expect(state(left[0]!)).toBe('Allocated');
    expect(left[0]!.metadata.deletionTimestamp).toBeUndefined();
    const deleting = await cluster.cp.rest.get<Fleet>(`${fleetPath()}/shows`);
    expect(deleting.metadata.deletionTimestamp).toBeDefined();
    expect(deleting.metadata.finalizers).toEqual(['smelterfleet.dev/drain']);
    const r = await cli(['release', '--allocator', allocatorAddress, '--composition', 'c2']);
    expect(r.code).toBe(0);
    await waitPods('shows', (ps) => ps.length === 0);
    await cluster.cp.rest.waitForList<Fleet>(fleetPath(), (items) => items.length === 0, AbortSignal.timeout(60_000));
  });

  it('needed nothing beyond the chart RBAC: no request of the controllers was refused', () => {
    for (const c of controllers.values()) expect(c.lines.filter((l) => /\b403\b|forbidden/i.test(l))).toEqual([]);
  });
});

describe('smelter-fleet controller --kubernetes: bad flags are named', () => {
  it.each([
    [['--lease-duration', 'soon'], 'controller: --lease-duration "soon": expected a duration like 15s or 500ms'],
    [
      ['--lease-duration', '5s', '--renew-deadline', '5s'],
      'controller: --renew-deadline must be shorter than --lease-duration',
    ],
    [['--retry-period', '0s'], 'controller: --retry-period must be more than 0 and shorter than --renew-deadline'],
  ])('%j', async (flags, message) => {
    const r = await cli(['controller', '--kubernetes', '--store', 'redis://127.0.0.1:1', '--link', 'a:1', ...flags]);
    expect([r.code, r.stderr.split('\n')[0]]).toEqual([2, `smelter-fleet ${message}`]);
  });

  it('needs --link, --kubernetes for its flags, and a readable kubeconfig', async () => {
    const noLink = await cli(['controller', '--kubernetes', '--store', 'redis://127.0.0.1:1']);
    expect([noLink.code, noLink.stderr.split('\n')[0]]).toEqual([
      2,
      "smelter-fleet controller: --link host:port is needed with --kubernetes (the allocators' fleet link as pods reach it)",
    ]);
    const flag = await cli(['controller', '--namespace', 'x', '--store', 'redis://127.0.0.1:1']);
    expect([flag.code, flag.stderr.split('\n')[0]]).toEqual([
      2,
      'smelter-fleet controller: --namespace needs --kubernetes',
    ]);
    const missing = await cli([
      'controller',
      '--kubernetes',
      '--store',
      'redis://127.0.0.1:1',
      '--link',
      'a:1',
      '--kubeconfig',
      '/nonexistent/kubeconfig',
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^smelter-fleet controller: --kubeconfig: ENOENT/);
  });
});
