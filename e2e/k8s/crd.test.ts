// The CRDs (deploy/crds) on a real kube-apiserver: examples accepted, bad specs refused naming the field (by the
// API server AND by core's parser, the same field), printer columns, status and scale subresources.
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { beforeAll, expect, test } from '@jest/globals';
import {
  AUTOSCALER_KIND,
  autoscalerSpecFromObject,
  FLEET_KIND,
  FLEET_PARSERS,
  fleetSpecFromObject,
  parseManifest,
} from '@smelter-fleet/core';
import { KubeApiError, repoRoot, type KubeObject } from '@smelter-fleet/testing';
import { parseYamlObjects } from '@smelter-fleet/kubernetes';
import { describeK8s, useControlPlane } from './harness.js';

const API = '/apis/smelterfleet.dev/v1alpha1';
const PARSERS = { ...FLEET_PARSERS, [AUTOSCALER_KIND]: autoscalerSpecFromObject };

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec: Record<string, unknown> };

const fleet = (spec: Record<string, unknown>, name = 'f'): Doc => ({
  apiVersion: 'smelterfleet.dev/v1alpha1',
  kind: FLEET_KIND,
  metadata: { name },
  spec,
});
const autoscaler = (spec: Record<string, unknown>, name = 'a'): Doc => ({
  apiVersion: 'smelterfleet.dev/v1alpha1',
  kind: AUTOSCALER_KIND,
  metadata: { name },
  spec,
});
const buffer = { type: 'Buffer', buffer: { bufferSize: 2 } };

/** The field path core's parser names for a bad document (undefined when it accepts it). */
function coreRejects(doc: Doc): string | undefined {
  try {
    (doc.kind === FLEET_KIND ? fleetSpecFromObject : autoscalerSpecFromObject)(doc);
    return undefined;
  } catch (err) {
    const path = (err as { path?: (string | number)[] }).path;
    if (!Array.isArray(path)) throw err;
    return path.join('.');
  }
}

/** `a.b[0].c[key]` (API server style) -> `a.b.0.c.key` (core style). */
const dotted = (path: string) => path.replace(/\[([^\]]*)\]/g, '.$1');

describeK8s('SmelterFleet and SmelterFleetAutoscaler CRDs on a real API server', () => {
  const cluster = useControlPlane({ controllerManager: false, scheduler: false, kwok: false, namespace: 'crd' });
  const ns = () => cluster.namespace;
  const plural = (doc: Doc) => (doc.kind === FLEET_KIND ? 'smelterfleets' : 'smelterfleetautoscalers');
  /** Creates (or only validates, with dryRun) as `kubectl apply` would: unknown fields are errors. */
  const create = (doc: Doc, dryRun = true) =>
    cluster.cp.rest.create<KubeObject & { spec: Record<string, unknown> }>(
      `${API}/namespaces/${ns()}/${plural(doc)}?fieldValidation=Strict${dryRun ? '&dryRun=All' : ''}`,
      doc,
    );
  const apiRejects = async (doc: Doc): Promise<KubeApiError | undefined> => {
    try {
      await create(doc);
      return undefined;
    } catch (err) {
      if (err instanceof KubeApiError) return err;
      throw err;
    }
  };

  beforeAll(async () => {
    const names: string[] = [];
    for (const file of readdirSync(join(repoRoot, 'deploy/crds'))) {
      const [crd] = parseYamlObjects(readFileSync(join(repoRoot, 'deploy/crds', file), 'utf8')) as KubeObject[];
      if (!crd) throw new Error(`no CRD in ${file}`);
      await cluster.cp.rest.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      names.push(crd.metadata.name);
    }
    type Crd = KubeObject & { status?: { conditions?: { type: string; status: string }[] } };
    await cluster.cp.rest.waitForList<Crd>(
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      (crds) =>
        names.every((n) =>
          crds
            .find((c) => c.metadata.name === n)
            ?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'),
        ),
      AbortSignal.timeout(30_000),
    );
  }, 60_000);

  const examples = [
    ...readdirSync(join(repoRoot, 'deploy/examples')).filter((f) => f.endsWith('.yaml')),
    ...readdirSync(join(repoRoot, 'deploy/examples/kubernetes')).map((f) => `kubernetes/${f}`),
  ];
  test.each(examples)('deploy/examples/%s: every document accepted by core and by the API server', async (file) => {
    const text = readFileSync(join(repoRoot, 'deploy/examples', file), 'utf8');
    expect(parseManifest(text, file, PARSERS).length).toBeGreaterThan(0);
    for (const doc of parseYamlObjects(text)) await create(doc as Doc);
  });

  // Valid corners: both accept.
  test.each<[string, Doc]>([
    ['an empty spec (defaults)', fleet({})],
    ['durations as integer milliseconds', fleet({ drain: { flushTime: 1500, maxDrainTime: 7_200_000 } })],
    ['fractional durations', fleet({ health: { period: '0.5s', leaseTimeout: '1.5m' } })],
    ['a duration at its maximum, in another unit', fleet({ drain: { flushTime: '3600000ms', maxDrainTime: '168h' } })],
    ['maxSurge 0 with maxUnavailable 1', fleet({ strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } } })],
    ['Recreate without rollingUpdate', fleet({ strategy: { type: 'Recreate' } })],
    [
      'hostNetwork (portPolicy defaults to Dynamic)',
      fleet({ template: { spec: { kubernetes: { hostNetwork: true } } } }),
    ],
    [
      'ExternalIP with Dynamic host ports',
      fleet({ template: { spec: { kubernetes: { portPolicy: 'Dynamic', addressType: 'ExternalIP' } } } }),
    ],
    [
      'Supervisor with an image',
      fleet({ template: { spec: { image: 'r.example/s:1', kubernetes: { mode: 'Supervisor' } } } }),
    ],
    [
      'quantities as integers and strings',
      fleet({
        template: { spec: { resources: { requests: { cpu: 2, memory: '4Gi' }, limits: { 'nvidia.com/gpu': '1' } } } },
      }),
    ],
    ['a percentage buffer', autoscaler({ fleetName: 'f', policy: { type: 'Buffer', buffer: { bufferSize: '20%' } } })],
    [
      'a schedule nested in a chain, in a schedule',
      autoscaler({
        fleetName: 'f',
        policy: {
          type: 'Schedule',
          schedule: {
            between: { start: '2026-11-24T08:00:00Z', end: '2026-12-24T08:00:00Z' },
            policy: {
              type: 'Chain',
              chain: [
                {
                  id: 'nights',
                  type: 'Schedule',
                  schedule: { activePeriod: { startCron: '0 22 * * *', duration: '8h' }, policy: buffer },
                },
                { id: 'days', ...buffer },
              ],
            },
          },
        },
      }),
    ],
    [
      'FixedInterval sync',
      autoscaler({ fleetName: 'f', policy: buffer, sync: { type: 'FixedInterval', interval: '5s' } }),
    ],
  ])('accepted by both: %s', async (_what, doc) => {
    expect(coreRejects(doc)).toBeUndefined();
    await create(doc);
  });

  // Bad specs: both refuse, naming the same field. `path` is what the API server names (core's path starts with it).
  test.each<[string, Doc, string]>([
    ['replicas -1', fleet({ replicas: -1 }), 'spec.replicas'],
    ['replicas over 10000', fleet({ replicas: 10_001 }), 'spec.replicas'],
    ['replicas as text', fleet({ replicas: 'three' }), 'spec.replicas'],
    ['an unknown scheduling', fleet({ scheduling: 'Random' }), 'spec.scheduling'],
    ['an unknown field', fleet({ replica: 3 }), 'spec.replica'],
    ['a bad duration', fleet({ drain: { flushTime: 'soon' } }), 'spec.drain.flushTime'],
    ['a duration over its maximum', fleet({ drain: { flushTime: '2h' } }), 'spec.drain.flushTime'],
    ['a negative duration', fleet({ drain: { maxDrainTime: -5 } }), 'spec.drain.maxDrainTime'],
    ['a duration 1ms over its maximum', fleet({ drain: { flushTime: '3600001ms' } }), 'spec.drain.flushTime'],
    ['a health period under 50ms', fleet({ health: { period: '10ms' } }), 'spec.health.period'],
    ['a lease timeout under 500ms', fleet({ health: { leaseTimeout: 100 } }), 'spec.health.leaseTimeout'],
    ['failureThreshold 0', fleet({ health: { failureThreshold: 0 } }), 'spec.health.failureThreshold'],
    ['an unknown readiness', fleet({ health: { readiness: 'Never' } }), 'spec.health.readiness'],
    ['an unknown onRelease', fleet({ drain: { onRelease: 'Keep' } }), 'spec.drain.onRelease'],
    ['an unknown strategy', fleet({ strategy: { type: 'Rolling' } }), 'spec.strategy.type'],
    [
      'maxSurge over 100%',
      fleet({ strategy: { rollingUpdate: { maxSurge: '150%' } } }),
      'spec.strategy.rollingUpdate.maxSurge',
    ],
    [
      'maxSurge and maxUnavailable both 0',
      fleet({ strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: '0%' } } }),
      'spec.strategy.rollingUpdate.maxUnavailable',
    ],
    [
      'Recreate with rollingUpdate',
      fleet({ strategy: { type: 'Recreate', rollingUpdate: { maxSurge: 1 } } }),
      'spec.strategy.rollingUpdate',
    ],
    [
      'an empty command argument',
      fleet({ template: { spec: { command: ['smelter', ''] } } }),
      'spec.template.spec.command',
    ],
    ['a bad env name', fleet({ template: { spec: { env: { '1BAD': 'x' } } } }), 'spec.template.spec.env'],
    ['an unquoted env number', fleet({ template: { spec: { env: { FPS: 25 } } } }), 'spec.template.spec.env.FPS'],
    [
      'a bad label key',
      fleet({ template: { metadata: { labels: { 'bad key': 'x' } } } }),
      'spec.template.metadata.labels',
    ],
    [
      'a bad quantity',
      fleet({ template: { spec: { resources: { limits: { memory: 'lots' } } } } }),
      'spec.template.spec.resources.limits.memory',
    ],
    ['an image with spaces', fleet({ template: { spec: { image: 'my image' } } }), 'spec.template.spec.image'],
    [
      'Supervisor without an image',
      fleet({ template: { spec: { kubernetes: { mode: 'Supervisor' } } } }),
      'spec.template.spec.image',
    ],
    [
      'hostNetwork with portPolicy None',
      fleet({ template: { spec: { kubernetes: { hostNetwork: true, portPolicy: 'None' } } } }),
      'spec.template.spec.kubernetes.portPolicy',
    ],
    [
      'ExternalIP without host ports',
      fleet({ template: { spec: { kubernetes: { addressType: 'ExternalIP' } } } }),
      'spec.template.spec.kubernetes.addressType',
    ],
    ['a name that is not a DNS label', fleet({}, 'a.b'), 'metadata.name'],
    ['no fleetName', autoscaler({ policy: buffer }), 'spec.fleetName'],
    ['no policy', autoscaler({ fleetName: 'f' }), 'spec.policy'],
    ['an unknown policy type', autoscaler({ fleetName: 'f', policy: { type: 'Magic' } }), 'spec.policy.type'],
    [
      'a buffer without bufferSize',
      autoscaler({ fleetName: 'f', policy: { type: 'Buffer', buffer: { maxReplicas: 5 } } }),
      'spec.policy.buffer.bufferSize',
    ],
    [
      'a buffer of 150%',
      autoscaler({ fleetName: 'f', policy: { type: 'Buffer', buffer: { bufferSize: '150%' } } }),
      'spec.policy.buffer.bufferSize',
    ],
    [
      'maxReplicas under minReplicas',
      autoscaler({
        fleetName: 'f',
        policy: { type: 'Buffer', buffer: { bufferSize: 1, minReplicas: 5, maxReplicas: 2 } },
      }),
      'spec.policy.buffer.maxReplicas',
    ],
    [
      'settings of another policy type',
      autoscaler({ fleetName: 'f', policy: { type: 'Predictive', buffer: { bufferSize: 1 } } }),
      'spec.policy.buffer',
    ],
    [
      'a quantile of 1',
      autoscaler({ fleetName: 'f', policy: { type: 'Predictive', predictive: { quantile: 1 } } }),
      'spec.policy.predictive.quantile',
    ],
    [
      'a window shorter than the cold start',
      autoscaler({ fleetName: 'f', policy: { type: 'Predictive', predictive: { coldStart: '2m', window: '1m' } } }),
      'spec.policy.predictive.window',
    ],
    [
      'a webhook that is not http',
      autoscaler({ fleetName: 'f', policy: { type: 'Webhook', webhook: { url: 'ftp://example.com/x' } } }),
      'spec.policy.webhook.url',
    ],
    [
      'a schedule ending before it starts',
      autoscaler({
        fleetName: 'f',
        policy: {
          type: 'Schedule',
          schedule: { between: { start: '2026-12-01T00:00:00Z', end: '2026-11-01T00:00:00Z' }, policy: buffer },
        },
      }),
      'spec.policy.schedule.between.end',
    ],
    [
      'a cron without a duration',
      autoscaler({
        fleetName: 'f',
        policy: { type: 'Schedule', schedule: { activePeriod: { startCron: '0 17 * * 1-5' }, policy: buffer } },
      }),
      'spec.policy.schedule.activePeriod.duration',
    ],
    ['an empty chain', autoscaler({ fleetName: 'f', policy: { type: 'Chain', chain: [] } }), 'spec.policy.chain'],
    [
      'a chain id used twice',
      autoscaler({
        fleetName: 'f',
        policy: {
          type: 'Chain',
          chain: [
            { id: 'x', ...buffer },
            { id: 'x', ...buffer },
          ],
        },
      }),
      'spec.policy.chain',
    ],
    [
      'a bad policy nested in a chain',
      autoscaler({
        fleetName: 'f',
        policy: {
          type: 'Chain',
          chain: [{ id: 'x', type: 'Schedule', schedule: { policy: { type: 'Buffer', buffer: { bufferSize: -1 } } } }],
        },
      }),
      'spec.policy.chain[0].schedule.policy.buffer.bufferSize',
    ],
    [
      'an interval with Event sync',
      autoscaler({ fleetName: 'f', policy: buffer, sync: { type: 'Event', interval: '5s' } }),
      'spec.sync.interval',
    ],
  ])('refused by both, naming the field: %s', async (_what, doc, path) => {
    const corePath = coreRejects(doc);
    expect(corePath).toBeDefined();
    expect(`${corePath}.`.startsWith(`${dotted(path)}.`)).toBe(true);
    const err = await apiRejects(doc);
    expect(err).toBeDefined();
    expect([400, 422]).toContain(err!.statusCode);
    expect(dotted(err!.message)).toContain(dotted(path));
  });

  test('defaults spec.replicas to 3, as core does', async () => {
    const created = await create(fleet({}, 'defaulted'), false);
    expect(created.spec.replicas).toBe(3);
    expect(fleetSpecFromObject(fleet({})).replicas).toBe(3);
  });

  /** GET as a Table, the way `kubectl get` asks. */
  function table(path: string): Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        cluster.cp.server + path,
        {
          ca: cluster.cp.ca.cert,
          cert: cluster.cp.admin.cert,
          key: cluster.cp.admin.key,
          headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
        },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () =>
            res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${res.statusCode} ${body}`)),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  test('status and scale subresources; kubectl get shows Desired/Ready/Allocated/Draining/Age', async () => {
    const base = `${API}/namespaces/${ns()}/smelterfleets`;
    await create(fleet({ replicas: 4 }, 'shown'), false);
    // Status goes through /status only: the main resource ignores it, /status ignores spec.
    await cluster.cp.rest.patch(`${base}/shown`, { status: { replicas: 99 } });
    expect((await cluster.cp.rest.get(`${base}/shown`)).status).toBeUndefined();
    await cluster.cp.rest.patch(`${base}/shown/status`, {
      spec: { replicas: 1 },
      status: {
        replicas: 4,
        readyReplicas: 2,
        allocatedReplicas: 1,
        drainingReplicas: 1,
        updatedReplicas: 4,
        observedGeneration: 1,
        selector: 'smelterfleet.dev/fleet=shown',
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'Reconciled',
            message: '',
            lastTransitionTime: '2026-11-24T22:00:00Z',
          },
        ],
      },
    });
    const shown = await cluster.cp.rest.get<KubeObject & { spec: { replicas: number }; status: unknown }>(
      `${base}/shown`,
    );
    expect(shown.spec.replicas).toBe(4);
    expect(shown.status).toMatchObject({ readyReplicas: 2, allocatedReplicas: 1, drainingReplicas: 1 });

    const t = await table(base);
    expect(t.columnDefinitions.map((c) => c.name)).toEqual([
      'Name',
      'Desired',
      'Ready',
      'Allocated',
      'Draining',
      'Age',
      'Current',
      'Region',
    ]);
    const row = t.rows.find((r) => r.cells[0] === 'shown');
    expect(row?.cells.slice(0, 5)).toEqual(['shown', 4, 2, 1, 1]);

    // Scale: what an HPA or `kubectl scale` uses; the selector comes from status.
    type Scale = KubeObject & { spec: { replicas: number }; status: { replicas: number; selector?: string } };
    const scale = await cluster.cp.rest.get<Scale>(`${base}/shown/scale`);
    expect(scale.spec.replicas).toBe(4);
    expect(scale.status).toEqual({ replicas: 4, selector: 'smelterfleet.dev/fleet=shown' });
    await cluster.cp.rest.patch(`${base}/shown/scale`, { spec: { replicas: 7 } });
    expect((await cluster.cp.rest.get<Scale>(`${base}/shown`)).spec.replicas).toBe(7);
    // The schema still holds through the scale subresource.
    const tooMany = await cluster.cp.rest.patch(`${base}/shown/scale`, { spec: { replicas: 10_001 } }).catch((e) => e);
    expect(tooMany).toBeInstanceOf(KubeApiError);
    expect((tooMany as KubeApiError).message).toContain('spec.replicas');
  });

  test('kubectl get smelterfleetautoscalers shows Fleet/Policy/Desired/Age', async () => {
    const base = `${API}/namespaces/${ns()}/smelterfleetautoscalers`;
    await create(autoscaler({ fleetName: 'shown', policy: buffer }, 'shown'), false);
    await cluster.cp.rest.patch(`${base}/shown/status`, {
      status: { currentReplicas: 4, desiredReplicas: 6, lastScaleTime: '2026-11-24T22:00:00Z' },
    });
    const t = await table(base);
    expect(t.columnDefinitions.map((c) => c.name).slice(0, 5)).toEqual(['Name', 'Fleet', 'Policy', 'Desired', 'Age']);
    expect(t.rows.find((r) => r.cells[0] === 'shown')?.cells.slice(0, 4)).toEqual(['shown', 'shown', 'Buffer', 6]);
  });

  test('short names and category are served (kubectl get sfleet, sfas, smelter)', async () => {
    const resources = await cluster.cp.rest.get<{
      resources: { name: string; shortNames?: string[]; categories?: string[] }[];
    }>(API);
    const byName = new Map(resources.resources.map((r) => [r.name, r]));
    expect(byName.get('smelterfleets')).toMatchObject({ shortNames: ['sfleet'], categories: ['smelter'] });
    expect(byName.get('smelterfleetautoscalers')).toMatchObject({ shortNames: ['sfas'], categories: ['smelter'] });
    expect(byName.has('smelterfleets/scale')).toBe(true);
    expect(byName.has('smelterfleets/status')).toBe(true);
  });
});
