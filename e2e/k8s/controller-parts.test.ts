// The controller's Kubernetes parts on a real API server, in this process: leader election on a Lease, the
// informer's restart, FleetSync (custom resources <-> store, status subresource, finalizer) and Kubernetes Events.
import { afterEach, beforeAll, expect, it, jest } from '@jest/globals';
import type { FleetSpec, NewServer } from '@smelter-fleet/core';
import {
  FLEET_FINALIZER,
  FleetSync,
  Informer,
  KubeEventRecorder,
  LeaderElector,
  smelterFleetCrd,
  updateStatus,
  type CustomResource,
} from '@smelter-fleet/kubernetes';
import { MemoryStore } from '@smelter-fleet/memory-store';
import type { KubeObject } from '@smelter-fleet/testing';
import { describeK8s, useControlPlane } from './harness.js';

jest.setTimeout(60_000);

const API = '/apis/smelterfleet.dev/v1alpha1';
type Lease = KubeObject & { spec: { holderIdentity?: string; leaseTransitions?: number } };
type Fleet = KubeObject & {
  spec: Record<string, unknown>;
  status?: Record<string, unknown> & {
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
};
type Event = KubeObject & {
  involvedObject: { kind: string; name: string; uid?: string };
  reason: string;
  type: string;
  message: string;
  count: number;
};

/** Resolves when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true }),
  );
}

describeK8s('controller parts on a real API server', () => {
  const cluster = useControlPlane({ controllerManager: false, scheduler: false, kwok: false, namespace: 'parts' });
  const ns = () => cluster.namespace;
  const stops: AbortController[] = [];
  const done: Promise<unknown>[] = [];
  const background = (p: Promise<unknown>) => done.push(p.catch(() => undefined));
  afterEach(async () => {
    for (const s of stops.splice(0)) s.abort();
    await Promise.all(done.splice(0));
  });

  beforeAll(async () => {
    // An older, looser SmelterFleet schema (spec unchecked), so a spec the parser refuses can reach the controller.
    const crd = smelterFleetCrd() as unknown as {
      metadata: { name: string };
      spec: { versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[] };
    };
    for (const v of crd.spec.versions)
      v.schema.openAPIV3Schema.properties.spec = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
    await cluster.cp.rest.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
    await cluster.cp.rest.waitForList<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      (crds) =>
        crds.some(
          (c) =>
            c.metadata.name === crd.metadata.name &&
            c.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True'),
        ),
      AbortSignal.timeout(30_000),
    );
  }, 60_000);

  const waitFleet = async (path: string, name: string, ok: (f: Fleet) => boolean): Promise<Fleet> => {
    const match = (f: Fleet) => f.metadata.name === name && ok(f);
    const items = await cluster.cp.rest.waitForList<Fleet>(
      path,
      (list) => list.some(match),
      AbortSignal.timeout(20_000),
    );
    return items.find(match)!;
  };
  const leasePath = (name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns()}/leases/${name}`;
  const elector = (identity: string, lease: string, releaseOnStop = true) =>
    new LeaderElector({
      kubeConfig: cluster.kubeConfig,
      namespace: ns(),
      leaseName: lease,
      identity,
      leaseDurationMs: 2000,
      renewDeadlineMs: 1500,
      retryPeriodMs: 200,
      releaseOnStop,
    });
  /** Runs a candidate; `leading` resolves with its leadership signal each time it leads. */
  function campaign(e: LeaderElector) {
    const stop = new AbortController();
    stops.push(stop);
    const terms: AbortSignal[] = [];
    let onTerm: (() => void) | undefined;
    const running = e.run(stop.signal, async (leading) => {
      terms.push(leading);
      onTerm?.();
      await aborted(leading);
    });
    background(running);
    return {
      stop,
      running,
      terms,
      /** Resolves once it has led `n` times. */
      led: (n = 1) =>
        new Promise<AbortSignal>((resolve) => {
          const check = () => {
            if (terms.length >= n) resolve(terms[n - 1]!);
          };
          onTerm = check;
          check();
        }),
    };
  }

  it('elects one leader; a stopped leader hands the Lease over at once', async () => {
    const a = campaign(elector('a', 'hand-over'));
    await a.led();
    const b = campaign(elector('b', 'hand-over'));
    const lease = await cluster.cp.rest.get<Lease>(leasePath('hand-over'));
    expect(lease.spec.holderIdentity).toBe('a');
    expect(b.terms).toHaveLength(0);
    a.stop.abort();
    await a.running;
    expect(a.terms[0]!.aborted).toBe(true); // its work was told to stop
    await b.led();
    const after = await cluster.cp.rest.get<Lease>(leasePath('hand-over'));
    expect(after.spec).toMatchObject({ holderIdentity: 'b' });
  });

  it('takes over the Lease of a leader that vanished without releasing it, once it expires', async () => {
    const a = campaign(elector('a', 'expiry', false));
    await a.led();
    const b = campaign(elector('b', 'expiry'));
    a.stop.abort(); // stops renewing, leaves the Lease held (as a SIGKILLed process would)
    await a.running;
    expect((await cluster.cp.rest.get<Lease>(leasePath('expiry'))).spec.holderIdentity).toBe('a');
    await b.led();
    const lease = await cluster.cp.rest.get<Lease>(leasePath('expiry'));
    expect(lease.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('stops leading at once when the Lease is taken away, and campaigns again', async () => {
    const a = campaign(elector('a', 'taken'));
    const term = await a.led();
    // Someone else writes the Lease (compare-and-swap on what it read): a sees it on its next renewal.
    const lease = await cluster.cp.rest.get<Lease>(leasePath('taken'));
    await cluster.cp.rest.replace(leasePath('taken'), {
      ...lease,
      spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 1 },
    });
    await aborted(term);
    // The intruder never renews: a gets it back once it expires.
    await a.led(2);
    expect((await cluster.cp.rest.get<Lease>(leasePath('taken'))).spec.holderIdentity).toBe('a');
  });

  it('a leader whose work fails steps down (no spinning) and another candidate leads', async () => {
    const stop = new AbortController();
    stops.push(stop);
    let failedOnce!: () => void;
    const failed = new Promise<void>((resolve) => (failedOnce = resolve));
    let terms = 0;
    background(
      elector('a', 'failing').run(stop.signal, async () => {
        terms++;
        failedOnce();
        throw new Error('cannot start reconciling');
      }),
    );
    await failed;
    const b = campaign(elector('b', 'failing'));
    await b.led();
    expect((await cluster.cp.rest.get<Lease>(leasePath('failing'))).spec.holderIdentity).toBe('b');
    expect(terms).toBeGreaterThanOrEqual(1);
  });

  it('informer: lists, follows changes, and recovers from a failing list (a resource type not there yet)', async () => {
    const stop = new AbortController();
    stops.push(stop);
    const path = `/apis/example.dev/v1/namespaces/${ns()}/widgets`;
    const informer = new Informer<KubeObject>({
      kubeConfig: cluster.kubeConfig,
      path,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    const errors: unknown[] = [];
    let firstError!: () => void;
    const failed = new Promise<void>((resolve) => (firstError = resolve));
    informer.onError((err) => {
      errors.push(err);
      firstError();
    });
    const added: string[] = [];
    informer.on('add', (o) => added.push(o.metadata.name));
    const synced = informer.start(stop.signal);
    background(synced);
    await failed; // 404: no such resource yet
    expect(informer.synced).toBe(false);
    await cluster.cp.rest.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.example.dev' },
      spec: {
        group: 'example.dev',
        names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        ],
      },
    });
    await synced;
    expect(errors.length).toBeGreaterThan(0);
    const seen = new Promise<void>((resolve) => informer.on('add', (o) => o.metadata.name === 'w1' && resolve()));
    // Listed, so served: creation works now.
    await cluster.cp.rest.create(path, { apiVersion: 'example.dev/v1', kind: 'Widget', metadata: { name: 'w1' } });
    await seen;
    expect(informer.get('w1', ns())?.metadata.name).toBe('w1');
    expect(added).toEqual(['w1']);
    stop.abort();
    await informer.stopped();
  });

  it('FleetSync: mirrors SmelterFleets into the store and store state into their status', async () => {
    const store = new MemoryStore();
    const events = new KubeEventRecorder({ kubeConfig: cluster.kubeConfig, namespace: ns() });
    const stop = new AbortController();
    stops.push(stop);
    const sync = new FleetSync({
      kubeConfig: cluster.kubeConfig,
      namespace: ns(),
      store,
      events,
      statusIntervalMs: 50,
    });
    // A fleet in the store without a resource (deleted while no controller ran) is removed once listed.
    await store.putFleet(fleetOf('orphan', 1));
    const running = sync.run(stop.signal);
    background(running);
    await sync.synced();
    expect(await store.getFleet('orphan')).toBeUndefined();

    const path = `${API}/namespaces/${ns()}/smelterfleets`;
    await cluster.cp.rest.create(path, {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleet',
      metadata: { name: 'web' },
      spec: { replicas: 2, template: { metadata: { labels: { tier: 'web' } } } },
    });
    await untilStored(store, 'web', (f) => f?.replicas === 2);
    expect((await store.getFleet('web'))?.template.labels).toEqual({ tier: 'web' });

    // Servers in the store show in the status (counts, selector, conditions, observedGeneration).
    const s1 = await store.addServer(serverOf('web-1', 'web'));
    await store.updateServer(s1.name, { event: 'Healthy' });
    await store.addServer(serverOf('web-2', 'web'));
    const withStatus = await waitFleet(path, 'web', (f) => f.status?.readyReplicas === 1 && f.status?.replicas === 2);
    expect(withStatus.status).toMatchObject({
      replicas: 2,
      readyReplicas: 1,
      allocatedReplicas: 0,
      drainingReplicas: 0,
      updatedReplicas: 2,
      observedGeneration: withStatus.metadata.generation,
      selector: 'smelterfleet.dev/fleet=web',
    });
    expect(withStatus.status?.conditions?.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'True' });
    expect(withStatus.metadata.finalizers).toEqual([FLEET_FINALIZER]);

    // The scale subresource, as an autoscaler writes it, comes back through the informer.
    await sync.scaleFleet('web', 3);
    await untilStored(store, 'web', (f) => f?.replicas === 3);

    // A spec the parser refuses: nothing applied, a Warning event and a condition name the field.
    await cluster.cp.rest.patch(`${path}/web`, { spec: { scheduling: 'Sideways' } });
    const refused = await waitFleet(path, 'web', (f) =>
      Boolean(f.status?.conditions?.some((c) => c.type === 'Accepted' && c.status === 'False')),
    );
    expect(refused.status?.conditions?.find((c) => c.type === 'Accepted')).toMatchObject({
      reason: 'InvalidSpec',
      message: 'spec.scheduling: must be one of Packed, Distributed (got "Sideways")',
    });
    expect(refused.status?.observedGeneration).toBe(refused.metadata.generation);
    expect((await store.getFleet('web'))?.replicas).toBe(3);
    await events.flush();
    const warnings = await cluster.cp.rest.list<Event>(`/api/v1/namespaces/${ns()}/events`);
    expect(warnings.items.find((e) => e.reason === 'InvalidSpec')).toMatchObject({
      type: 'Warning',
      involvedObject: { kind: 'SmelterFleet', name: 'web' },
      message: 'not applied: spec.scheduling: must be one of Packed, Distributed (got "Sideways")',
    });

    // Deleted: out of the store at once (the controller drains its servers); the resource stays until they are gone.
    await cluster.cp.rest.delete(`${path}/web`);
    await untilStored(store, 'web', (f) => f === undefined);
    const deleting = await cluster.cp.rest.get<Fleet>(`${path}/web`);
    expect(deleting.metadata.deletionTimestamp).toBeDefined();
    await store.removeServer('web-1');
    await store.removeServer('web-2');
    await cluster.cp.rest.waitForList<Fleet>(path, (items) => items.length === 0, AbortSignal.timeout(20_000));
  });

  it('updateStatus: a stale resourceVersion is a 409, re-read and retried', async () => {
    const path = `${API}/namespaces/${ns()}/smelterfleets`;
    const created = await cluster.cp.rest.create<Fleet>(path, {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleet',
      metadata: { name: 'racy' },
      spec: { replicas: 1 },
    });
    await cluster.cp.rest.patch(`${path}/racy`, { metadata: { labels: { moved: 'on' } } });
    let reads = 0;
    const written = await updateStatus<CustomResource>(
      cluster.kubeConfig,
      `${path}/racy`,
      () => {
        reads++;
        return { replicas: 7 };
      },
      { current: created as unknown as CustomResource },
    );
    expect(reads).toBe(2); // the stale copy, then the re-read one
    expect(written?.status).toEqual({ replicas: 7 });
    expect((await cluster.cp.rest.get<Fleet>(`${path}/racy`)).status).toEqual({ replicas: 7 });
  });

  it('KubeEventRecorder: repeats aggregate into one Event; a burst beyond the limit is dropped', async () => {
    const events = new KubeEventRecorder({
      kubeConfig: cluster.kubeConfig,
      namespace: ns(),
      burst: 5,
      refillMs: 3_600_000,
    });
    for (let i = 0; i < 3; i++)
      events.record({ type: 'Normal', reason: 'ScaledUp', object: 'fleet/ev', fleet: 'ev', message: 'launching 1' });
    await events.flush();
    for (let i = 0; i < 5; i++)
      events.record({ type: 'Warning', reason: 'Replaced', object: 'server/ev-1', fleet: 'ev', message: `n${i}` });
    for (let i = 0; i < 4; i++)
      events.record({ type: 'Normal', reason: 'Draining', object: 'fleet/ev', fleet: 'ev', message: `d${i}` });
    await events.flush();
    const all = (await cluster.cp.rest.list<Event>(`/api/v1/namespaces/${ns()}/events`)).items.filter((e) =>
      ['ev', 'ev-1'].includes(e.involvedObject.name),
    );
    expect(all.filter((e) => e.reason === 'ScaledUp')).toEqual([
      expect.objectContaining({ count: 3, involvedObject: expect.objectContaining({ kind: 'SmelterFleet' }) }),
    ]);
    expect(all.filter((e) => e.reason === 'Replaced')).toHaveLength(5);
    // fleet/ev had 5 tokens: 3 ScaledUp, then 2 of the 4 Draining.
    expect(all.filter((e) => e.reason === 'Draining')).toHaveLength(2);
    expect(events.dropped).toBe(2);
    expect(events.list({ fleet: 'ev' })).toHaveLength(1 + 5 + 4); // the in-memory history keeps everything
  });
});

function fleetOf(name: string, replicas: number): FleetSpec {
  return {
    name,
    replicas,
    region: 'local',
    scheduling: 'Packed',
    template: { labels: {}, command: [], env: {} },
    drain: { onRelease: 'Recycle', flushTimeMs: 1000, maxDrainTimeMs: 60_000 },
    health: {
      startupTimeoutMs: 60_000,
      periodMs: 500,
      failureThreshold: 3,
      readiness: 'Smelter',
      leaseTimeoutMs: 3000,
      sdkHealthTimeoutMs: 0,
    },
  };
}

function serverOf(name: string, fleet: string): NewServer {
  return {
    name,
    fleet,
    region: 'local',
    address: '10.0.0.1',
    ports: { api: 8081, whip_whep: 9000, rtmp: 1935 },
    labels: {},
    node: 'n',
  };
}

/** Resolves once the store's fleet `name` satisfies `ok`, checked now and on each store change. */
async function untilStored(
  store: MemoryStore,
  name: string,
  ok: (f: Awaited<ReturnType<MemoryStore['getFleet']>>) => boolean,
): Promise<void> {
  const stop = new AbortController();
  const changes = store.watch(stop.signal);
  try {
    if (ok(await store.getFleet(name))) return;
    for await (const e of changes) if (e.type === 'fleet' && ok(await store.getFleet(name))) return;
  } finally {
    stop.abort();
  }
}
