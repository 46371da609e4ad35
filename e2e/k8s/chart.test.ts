// The Helm chart (deploy/helm/smelter-fleet) with the real helm binary: lint, render with default and other values,
// install into a real control plane, and check RBAC by acting as the controller's and allocator's service accounts.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { KubeApiError, KubeRest, repoRoot, type KubeObject } from '@smelter-fleet/testing';
import { parseYamlObjects } from '@smelter-fleet/kubernetes';
import { describeK8s, useControlPlane } from './harness.js';

const CHART = join(repoRoot, 'deploy/helm/smelter-fleet');
const KUBE_VERSION = '1.37.2';

interface Rendered extends KubeObject {
  spec?: Record<string, unknown> & { template?: { spec: PodSpec; metadata: { labels: Record<string, string> } } };
  data?: Record<string, string>;
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  containers: { name: string; args?: string[]; env?: { name: string }[] }[];
}

describeK8s('Helm chart deploy/helm/smelter-fleet', () => {
  const cluster = useControlPlane({ nodes: 2, namespace: 'smelter-fleet' });
  let helmHome: string;

  beforeAll(() => {
    helmHome = mkdtempSync(join(tmpdir(), 'sf-helm-'));
  });
  afterAll(() => rmSync(helmHome, { recursive: true, force: true }));

  /** Runs helm; resolves with stdout, rejects with its stderr. */
  function helm(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        join(cluster.cp.binDir, 'helm'),
        args,
        {
          maxBuffer: 64 << 20,
          env: {
            PATH: process.env.PATH ?? '',
            HOME: helmHome,
            HELM_CACHE_HOME: join(helmHome, 'cache'),
            HELM_CONFIG_HOME: join(helmHome, 'config'),
            HELM_DATA_HOME: join(helmHome, 'data'),
            KUBECONFIG: cluster.cp.kubeconfigPath,
          },
        },
        (err, stdout, stderr) =>
          err ? reject(new Error(`helm ${args[0]}: ${stderr || err.message}`)) : resolve(stdout),
      );
    });
  }

  const render = async (set: string[] = []): Promise<Rendered[]> => {
    const out = await helm([
      'template',
      'sf',
      CHART,
      '--namespace',
      'smelter-fleet',
      '--kube-version',
      KUBE_VERSION,
      ...set.flatMap((s) => ['--set', s]),
    ]);
    return parseYamlObjects(out) as Rendered[];
  };
  const find = (docs: Rendered[], kind: string, name: string) => {
    const doc = docs.find((d) => d.kind === kind && d.metadata.name === name);
    if (!doc) throw new Error(`no ${kind} ${name} in ${docs.map((d) => `${d.kind}/${d.metadata.name}`).join(', ')}`);
    return doc;
  };
  const kinds = (docs: Rendered[]) => docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();

  test('helm lint is clean (default and other values)', async () => {
    expect(await helm(['lint', CHART, '--strict', '--kube-version', KUBE_VERSION])).toMatch(/0 chart\(s\) failed/);
    expect(
      await helm([
        'lint',
        CHART,
        '--strict',
        '--kube-version',
        KUBE_VERSION,
        '--set',
        'gateway.enabled=true,exampleFleet.enabled=true',
      ]),
    ).toMatch(/0 chart\(s\) failed/);
  });

  test('renders a working install by default: controller x2, allocators x3, try-out Redis, RBAC, policies', async () => {
    const docs = await render();
    expect(kinds(docs)).toEqual([
      'ClusterRole/sf-smelter-fleet-smelter-fleet-controller-nodes',
      'ClusterRoleBinding/sf-smelter-fleet-smelter-fleet-controller-nodes',
      'Deployment/sf-smelter-fleet-allocator',
      'Deployment/sf-smelter-fleet-controller',
      'NetworkPolicy/sf-smelter-fleet-fleet-servers',
      'NetworkPolicy/sf-smelter-fleet-redis',
      'PodDisruptionBudget/sf-smelter-fleet-allocated-servers',
      'PodDisruptionBudget/sf-smelter-fleet-allocator',
      'Role/sf-smelter-fleet-controller',
      'RoleBinding/sf-smelter-fleet-controller',
      'Secret/sf-smelter-fleet-allocator-tokens',
      'Secret/sf-smelter-fleet-link',
      'Secret/sf-smelter-fleet-redis-url',
      'Service/sf-smelter-fleet-allocator',
      'Service/sf-smelter-fleet-redis',
      'ServiceAccount/sf-smelter-fleet-allocator',
      'ServiceAccount/sf-smelter-fleet-controller',
      'StatefulSet/sf-smelter-fleet-redis',
    ]);
    const controller = find(docs, 'Deployment', 'sf-smelter-fleet-controller');
    expect(controller.spec?.replicas).toBe(2);
    const args = controller.spec!.template!.spec.containers[0]!.args!;
    expect(args.slice(0, 2)).toEqual(['controller', '--kubernetes']);
    expect(args).toContain('--link=sf-smelter-fleet-allocator.smelter-fleet.svc:50051');
    expect(args).toContain('--sidecar-image=ghcr.io/smelter-fleet/smelter-fleet:0.1.0');
    const allocator = find(docs, 'Deployment', 'sf-smelter-fleet-allocator');
    expect(allocator.spec?.replicas).toBe(3);
    expect(allocator.spec!.template!.spec.automountServiceAccountToken).toBe(false);
    expect(allocator.spec!.template!.spec.containers[0]!.env!.map((e) => e.name)).toEqual([
      'SMELTER_FLEET_STORE',
      'SMELTER_FLEET_LINK_SECRET',
    ]);
    // Callers need a token: a generated `admin` one by default.
    expect(allocator.spec!.template!.spec.containers[0]!.args).toContain(
      '--auth-tokens=/etc/smelter-fleet/auth/tokens',
    );
    const tokens = Buffer.from(find(docs, 'Secret', 'sf-smelter-fleet-allocator-tokens').data!.tokens!, 'base64');
    expect(tokens.toString()).toMatch(/^admin:[A-Za-z0-9]{48}\n$/);
    // The Redis URL points at the chart's Redis, with its generated password.
    const url = Buffer.from(find(docs, 'Secret', 'sf-smelter-fleet-redis-url').data!.url!, 'base64').toString();
    expect(url).toMatch(/^redis:\/\/:[A-Za-z0-9]{48}@sf-smelter-fleet-redis\.smelter-fleet\.svc:6379$/);
    // Smelter's API port (8081) closed but to the gateway; every other port open.
    const np = find(docs, 'NetworkPolicy', 'sf-smelter-fleet-fleet-servers');
    expect(np.spec).toEqual({
      podSelector: { matchExpressions: [{ key: 'smelterfleet.dev/fleet', operator: 'Exists' }] },
      policyTypes: ['Ingress'],
      ingress: [
        {
          ports: [
            { protocol: 'TCP', port: 1, endPort: 8080 },
            { protocol: 'TCP', port: 8082, endPort: 65535 },
            { protocol: 'UDP', port: 1, endPort: 65535 },
          ],
        },
        {
          from: [
            {
              podSelector: {
                matchLabels: {
                  'app.kubernetes.io/name': 'smelter-fleet',
                  'app.kubernetes.io/instance': 'sf',
                  'app.kubernetes.io/component': 'gateway',
                },
              },
            },
          ],
          ports: [{ protocol: 'TCP', port: 8081 }],
        },
      ],
    });
    expect(find(docs, 'PodDisruptionBudget', 'sf-smelter-fleet-allocated-servers').spec).toEqual({
      maxUnavailable: 0,
      selector: { matchLabels: { 'smelterfleet.dev/state': 'Allocated' } },
    });
  });

  test('renders other values: external Redis, gateway, more allocators, another API port, an example fleet', async () => {
    const docs = await render([
      'redis.enabled=false',
      'redis.url=rediss://user:pw@redis.example:6380/2',
      'gateway.enabled=true',
      'allocator.replicas=5',
      'fleet.smelterApiPort=9081',
      'exampleFleet.enabled=true',
      'fullnameOverride=fleet',
      'allocator.auth.tokens[0].name=backend',
      'allocator.auth.tokens[0].token=s3cret',
      'allocator.tls.secretName=allocator-tls',
      'gateway.publicUrl=https://gw.example.com',
    ]);
    const names = kinds(docs);
    expect(names).toEqual(
      expect.arrayContaining(['Deployment/fleet-gateway', 'Service/fleet-gateway', 'ServiceAccount/fleet-gateway']),
    );
    expect(names.filter((n) => n.includes('redis'))).toEqual(['Secret/fleet-redis-url']);
    expect(Buffer.from(find(docs, 'Secret', 'fleet-redis-url').data!.url!, 'base64').toString()).toBe(
      'rediss://user:pw@redis.example:6380/2',
    );
    const allocator = find(docs, 'Deployment', 'fleet-allocator');
    expect(allocator.spec?.replicas).toBe(5);
    expect(allocator.spec!.template!.spec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--tls-cert=/etc/smelter-fleet/tls/tls.crt',
        '--link-port=50052',
        '--gateway-url=https://gw.example.com',
      ]),
    );
    expect(Buffer.from(find(docs, 'Secret', 'fleet-allocator-tokens').data!.tokens!, 'base64').toString()).toBe(
      'backend:s3cret\n',
    );
    // Under TLS the sidecars link on the plaintext link port.
    expect(find(docs, 'Deployment', 'fleet-controller').spec!.template!.spec.containers[0]!.args).toContain(
      '--link=fleet-allocator.smelter-fleet.svc:50052',
    );
    expect(find(docs, 'Deployment', 'fleet-gateway').spec!.template!.spec.containers[0]!.args).toEqual(
      expect.arrayContaining(['gateway', '--gateway-host=0.0.0.0', '--public-url=https://gw.example.com']),
    );
    // The gateway reads the store; it never sees the link secret.
    expect(
      find(docs, 'Deployment', 'fleet-gateway').spec!.template!.spec.containers[0]!.env!.map((e) => e.name),
    ).toEqual(['SMELTER_FLEET_STORE']);
    const ingress = (find(docs, 'NetworkPolicy', 'fleet-fleet-servers').spec as { ingress: { ports: unknown[] }[] })
      .ingress;
    expect(ingress[0]!.ports).toContainEqual({ protocol: 'TCP', port: 1, endPort: 9080 });
    expect(ingress[1]!.ports).toEqual([{ protocol: 'TCP', port: 9081 }]);
    const example = find(docs, 'SmelterFleet', 'example');
    expect(example.spec).toMatchObject({ replicas: 2 });
  });

  test('refuses values without a Redis, saying which to set', async () => {
    await expect(render(['redis.enabled=false'])).rejects.toThrow(/redis\.url/);
    await expect(render(['redis.url=redis://x:6379'])).rejects.toThrow(/redis\.enabled/);
    await expect(
      render(['allocator.auth.insecure=true', 'allocator.auth.tokens[0].name=a', 'allocator.auth.tokens[0].token=b']),
    ).rejects.toThrow(/allocator\.auth/);
    await expect(render(['allocator.auth.tokens[0].name=a'])).rejects.toThrow(/name and a token/);
  });

  test('helm install into the control plane: CRDs, workloads, RBAC, policies; the controller may do what it needs and nothing else', async () => {
    const ns = cluster.namespace;
    const notes = await helm([
      'install',
      'sf',
      CHART,
      '--namespace',
      ns,
      '--set',
      'exampleFleet.enabled=true',
      '--timeout',
      '2m',
    ]);
    // The notes tell how to allocate, with the caller token's Secret.
    expect(notes).toContain(
      `kubectl -n ${ns} get secret sf-smelter-fleet-allocator-tokens -o jsonpath='{.data.tokens}'`,
    );
    expect(notes).toContain('--allocator sf-smelter-fleet-allocator.smelter-fleet.svc:50051 --token "$TOKEN"');
    const rest = cluster.cp.rest;
    // CRDs from the chart's crds/ folder, and the example fleet they made possible.
    await rest.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/smelterfleets.smelterfleet.dev');
    await rest.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/smelterfleetautoscalers.smelterfleet.dev');
    await rest.get(`/apis/smelterfleet.dev/v1alpha1/namespaces/${ns}/smelterfleets/example`);
    for (const path of [
      `/apis/apps/v1/namespaces/${ns}/deployments/sf-smelter-fleet-controller`,
      `/apis/apps/v1/namespaces/${ns}/deployments/sf-smelter-fleet-allocator`,
      `/apis/apps/v1/namespaces/${ns}/statefulsets/sf-smelter-fleet-redis`,
      `/api/v1/namespaces/${ns}/services/sf-smelter-fleet-allocator`,
      `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies/sf-smelter-fleet-fleet-servers`,
      `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/sf-smelter-fleet-allocated-servers`,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles/sf-smelter-fleet-controller`,
      `/apis/rbac.authorization.k8s.io/v1/clusterroles/sf-smelter-fleet-smelter-fleet-controller-nodes`,
    ])
      await rest.get(path);

    // The Deployments' pods are created and scheduled onto the (kwok) nodes: the manifests pass every admission.
    type Deployment = KubeObject & { status?: { availableReplicas?: number } };
    const deployments = await rest.waitForList<Deployment>(
      `/apis/apps/v1/namespaces/${ns}/deployments`,
      (ds) => ds.length === 2 && ds.every((d) => (d.status?.availableReplicas ?? 0) > 0),
      AbortSignal.timeout(90_000),
    );
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual([
      'sf-smelter-fleet-allocator',
      'sf-smelter-fleet-controller',
    ]);

    // Act as the service accounts (a client certificate with the service account's user name and groups).
    const as = (sa: string) => {
      const { cert } = cluster.cp.userKubeconfig(`system:serviceaccount:${ns}:${sa}`, [
        'system:serviceaccounts',
        `system:serviceaccounts:${ns}`,
        'system:authenticated',
      ]);
      return new KubeRest({ server: cluster.cp.server, ca: cluster.cp.ca.cert, cert: cert.cert, key: cert.key });
    };
    const allowed = async (client: KubeRest, attrs: Record<string, string>) => {
      const review = await client.create<{ status: { allowed: boolean } }>(
        '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
        { spec: { resourceAttributes: attrs } },
      );
      return review.status.allowed;
    };
    const controller = as('sf-smelter-fleet-controller');
    const fleets = { group: 'smelterfleet.dev', resource: 'smelterfleets', namespace: ns };
    const needs: Record<string, string>[] = [
      { ...fleets, verb: 'list' },
      { ...fleets, verb: 'watch' },
      { ...fleets, verb: 'patch', subresource: 'status' },
      { ...fleets, verb: 'update', subresource: 'scale' },
      { group: 'smelterfleet.dev', resource: 'smelterfleetautoscalers', namespace: ns, verb: 'watch' },
      {
        group: 'smelterfleet.dev',
        resource: 'smelterfleetautoscalers',
        namespace: ns,
        verb: 'update',
        subresource: 'status',
      },
      { resource: 'pods', namespace: ns, verb: 'create' },
      { resource: 'pods', namespace: ns, verb: 'delete' },
      { resource: 'pods', namespace: ns, verb: 'patch' },
      { resource: 'secrets', namespace: ns, verb: 'create' },
      { resource: 'events', namespace: ns, verb: 'create' },
      { group: 'coordination.k8s.io', resource: 'leases', namespace: ns, verb: 'update' },
      { resource: 'nodes', verb: 'list' },
    ];
    const refused: Record<string, string>[] = [
      { ...fleets, verb: 'delete' },
      { ...fleets, verb: 'create' },
      { resource: 'secrets', namespace: ns, verb: 'list' },
      { resource: 'pods', namespace: 'kube-system', verb: 'create' },
      { resource: 'pods', namespace: 'default', verb: 'list' },
      { resource: 'nodes', verb: 'patch' },
      { group: 'apps', resource: 'deployments', namespace: ns, verb: 'create' },
      { group: 'rbac.authorization.k8s.io', resource: 'roles', namespace: ns, verb: 'create' },
      { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', verb: 'create' },
      { group: 'coordination.k8s.io', resource: 'leases', namespace: 'kube-system', verb: 'update' },
    ];
    for (const attrs of needs) expect([attrs, await allowed(controller, attrs)]).toEqual([attrs, true]);
    for (const attrs of refused) expect([attrs, await allowed(controller, attrs)]).toEqual([attrs, false]);
    // And for real: it reads fleets and writes their status; it may not read Secrets.
    await controller.get(`/apis/smelterfleet.dev/v1alpha1/namespaces/${ns}/smelterfleets/example`);
    await controller.patch(`/apis/smelterfleet.dev/v1alpha1/namespaces/${ns}/smelterfleets/example/status`, {
      status: { replicas: 0, readyReplicas: 0, allocatedReplicas: 0, drainingReplicas: 0 },
    });
    const secrets = await controller.get(`/api/v1/namespaces/${ns}/secrets`).catch((e: unknown) => e);
    expect(secrets).toBeInstanceOf(KubeApiError);
    expect((secrets as KubeApiError).statusCode).toBe(403);

    // The allocator needs nothing from the API server, and gets nothing.
    const allocator = as('sf-smelter-fleet-allocator');
    for (const attrs of [
      { ...fleets, verb: 'get' },
      { resource: 'pods', namespace: ns, verb: 'list' },
      { resource: 'secrets', namespace: ns, verb: 'get' },
    ])
      expect([attrs, await allowed(allocator, attrs)]).toEqual([attrs, false]);
    controller.close();
    allocator.close();
  }, 180_000);

  test('other values pass the API server too (server-side dry run: gateway, external Redis, TLS, tokens)', async () => {
    await cluster.cp.rest.create('/api/v1/namespaces', { metadata: { name: 'other' } });
    const out = await helm([
      'install',
      'sf2',
      CHART,
      '--namespace',
      'other',
      '--dry-run=server',
      ...[
        'gateway.enabled=true',
        'gateway.publicUrl=https://gw.example.com',
        'redis.enabled=false',
        'redis.url=redis://redis.example:6379',
        'allocator.tls.secretName=allocator-tls',
        'allocator.tls.requireClientCertificate=true',
        'allocator.auth.tokens[0].name=backend',
        'allocator.auth.tokens[0].token=s3cret',
        'fleet.smelterApiPort=9081',
        'exampleFleet.enabled=true',
      ].flatMap((v) => ['--set', v]),
    ]);
    expect(out).toMatch(/STATUS: pending-install/);
    expect(out).toContain('name: sf2-smelter-fleet-gateway');
    expect(out).toContain('--client-ca=/etc/smelter-fleet/tls/ca.crt');
  }, 60_000);

  test('helm upgrade keeps the generated link secret, Redis password and caller token', async () => {
    const ns = cluster.namespace;
    const read = async (name: string) =>
      (await cluster.cp.rest.get<Rendered>(`/api/v1/namespaces/${ns}/secrets/${name}`)).data!;
    const before = {
      link: await read('sf-smelter-fleet-link'),
      redis: await read('sf-smelter-fleet-redis-url'),
      tokens: await read('sf-smelter-fleet-allocator-tokens'),
    };
    await helm(['upgrade', 'sf', CHART, '--namespace', ns, '--set', 'allocator.replicas=4', '--timeout', '2m']);
    expect(await read('sf-smelter-fleet-link')).toEqual(before.link);
    expect(await read('sf-smelter-fleet-redis-url')).toEqual(before.redis);
    expect(await read('sf-smelter-fleet-allocator-tokens')).toEqual(before.tokens);
    const allocator = await cluster.cp.rest.get<Rendered>(
      `/apis/apps/v1/namespaces/${ns}/deployments/sf-smelter-fleet-allocator`,
    );
    expect(allocator.spec?.replicas).toBe(4);
  }, 120_000);

  test('the chart’s CRDs are the generated ones in deploy/crds', () => {
    for (const file of ['smelterfleet.dev_smelterfleets.yaml', 'smelterfleet.dev_smelterfleetautoscalers.yaml'])
      expect(readFileSync(join(CHART, 'crds', file), 'utf8')).toBe(
        readFileSync(join(repoRoot, 'deploy/crds', file), 'utf8'),
      );
  });
});
