import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import {
  isFleetError,
  parseAutoscalerFile,
  type AutoscalerSpec,
  type FleetSpec,
  type Store,
} from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { fleetSpec, newServer, recordingLogger } from '@smelter-fleet/testing';
import { FleetAutoscaler } from './autoscaler.js';
import { SimClock } from './sim/sim-clock.js';

jest.setTimeout(20_000);

const T0 = Date.parse('2026-11-24T10:00:00Z');

function autoscaler(policyYaml: string, extra = ''): AutoscalerSpec {
  return parseAutoscalerFile(
    `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata: { name: scaler }
spec:
  fleetName: f
${extra}  policy:
${policyYaml
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`,
    'test.yaml',
  )[0]!;
}

/** Resolves with the fleet once `ok` holds, re-checked on every store change (no polling). */
async function untilFleet(store: Store, ok: (f: FleetSpec) => boolean): Promise<FleetSpec> {
  const ac = new AbortController();
  const changes = store.watch(ac.signal);
  try {
    let f = await store.getFleet('f');
    if (f && ok(f)) return f;
    for await (const _ of changes) {
      f = await store.getFleet('f');
      if (f && ok(f)) return f;
    }
    throw new Error('store closed first');
  } finally {
    ac.abort();
  }
}

/** Adds `n` Ready servers to fleet f, as the controller and sidecars would. */
async function readyServers(store: Store, n: number, prefix = 's'): Promise<void> {
  for (let i = 0; i < n; i++) {
    await store.addServer(newServer(`${prefix}${i}`, 'f'));
    await store.updateServer(`${prefix}${i}`, { event: 'Healthy' });
  }
}

describe('FleetAutoscaler on the memory store (real clock)', () => {
  let store: MemoryStore;
  let stop: AbortController;
  let running: Promise<void> | undefined;
  beforeEach(() => {
    store = new MemoryStore();
    stop = new AbortController();
  });
  afterEach(async () => {
    stop.abort();
    await running;
    await store.close();
  });

  it('scales up at once when servers are allocated, from the change feed', async () => {
    await store.putFleet(fleetSpec('f', { replicas: 0 }));
    const scaler = new FleetAutoscaler({
      store,
      autoscalers: [autoscaler('type: Buffer\nbuffer: { bufferSize: 2, maxReplicas: 10 }')],
    });
    running = scaler.run(stop.signal);
    await untilFleet(store, (f) => f.replicas === 2);
    await readyServers(store, 2);
    await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
    await untilFleet(store, (f) => f.replicas === 3);
    await store.allocate({ fleet: 'f', compositionId: 'c2', matchLabels: {}, metadata: {} });
    await untilFleet(store, (f) => f.replicas === 4);
    expect(scaler.status()[0]).toMatchObject({ fleetName: 'f', desiredReplicas: 4, scales: 3 });
    expect(scaler.status()[0]!.reason).toMatch(/buffer 2 over 2 busy/);
  });

  it('takes an autoscaler applied while running, and a new policy for it (smelter-fleet apply)', async () => {
    await store.putFleet(fleetSpec('f', { replicas: 0 }));
    const scaler = new FleetAutoscaler({ store, autoscalers: [] });
    running = scaler.run(stop.signal);
    const first = autoscaler('type: Buffer\nbuffer: { bufferSize: 2, maxReplicas: 10 }');
    expect(scaler.apply(first, { dryRun: true }).result).toBe('created');
    expect(scaler.status()).toEqual([]); // a dry run changes nothing
    expect(scaler.apply(first).result).toBe('created');
    await untilFleet(store, (f) => f.replicas === 2);
    expect(scaler.apply(first).result).toBe('unchanged');
    expect(scaler.apply(autoscaler('type: Buffer\nbuffer: { bufferSize: 5, maxReplicas: 10 }')).result).toBe(
      'configured',
    );
    await untilFleet(store, (f) => f.replicas === 5);
    const other = { ...first, name: 'another' };
    expect(() => scaler.apply(other)).toThrow(/fleet "f" already has autoscaler "scaler"/);
  });

  it('scales to zero, and an allocation finding no server (waiting demand) scales it up again', async () => {
    await store.putFleet(fleetSpec('f', { replicas: 2 }));
    const scaler = new FleetAutoscaler({
      store,
      autoscalers: [
        autoscaler(
          'type: Buffer\nbuffer: { bufferSize: 0, minReplicas: 0 }',
          '  behavior: { scaleDownStabilization: 0s }\n',
        ),
      ],
    });
    running = scaler.run(stop.signal);
    await untilFleet(store, (f) => f.replicas === 0);
    const allocatorStore = scaler.allocatorStore();
    const exhausted = await allocatorStore
      .allocate({ fleet: 'f', compositionId: 'late', matchLabels: {}, metadata: {} })
      .catch((err: unknown) => err);
    expect(isFleetError(exhausted, 'RESOURCE_EXHAUSTED')).toBe(true);
    await untilFleet(store, (f) => f.replicas === 1);
    // Once served, the composition is busy instead of waiting: still one replica.
    await readyServers(store, 1);
    await allocatorStore.allocate({ fleet: 'f', compositionId: 'late', matchLabels: {}, metadata: {} });
    await store.putFleet({ ...(await store.getFleet('f'))!, replicas: 7 }); // an operator's stray change
    await untilFleet(store, (f) => f.replicas === 1);
  });

  describe('webhook policy against a real HTTP server', () => {
    let server: Server;
    let url: string;
    let handler: (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void;
    beforeEach(async () => {
      server = createServer((req, res) => {
        let text = '';
        req.on('data', (c: Buffer) => (text += c.toString()));
        req.on('end', () => handler(req, res, JSON.parse(text) as Record<string, unknown>));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/scale`;
    });
    afterEach(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const reply = (res: ServerResponse, body: unknown) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    };
    const uidOf = (body: Record<string, unknown>) => (body.request as { uid: string }).uid;

    it("a hanging webhook of one fleet does not delay another fleet's decisions", async () => {
      let reached!: () => void;
      const hanging = new Promise<void>((resolve) => (reached = resolve));
      handler = () => reached(); // never answers
      await store.putFleet(fleetSpec('f', { replicas: 1 }));
      await store.putFleet(fleetSpec('g', { replicas: 0 }));
      const [hook] = parseAutoscalerFile(
        `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata: { name: hook }
spec:
  fleetName: f
  policy: { type: Webhook, webhook: { url: "${url}", timeout: 30s } }
`,
        'hook.yaml',
      );
      const buffer = { ...autoscaler('type: Buffer\nbuffer: { bufferSize: 1 }'), name: 'g-buffer', fleetName: 'g' };
      const scaler = new FleetAutoscaler({ store, autoscalers: [hook!, buffer] });
      running = scaler.run(stop.signal);
      const untilG = async (n: number) => {
        const ac = new AbortController();
        const changes = store.watch(ac.signal);
        try {
          if ((await store.getFleet('g'))!.replicas === n) return;
          for await (const _ of changes) if ((await store.getFleet('g'))!.replicas === n) return;
        } finally {
          ac.abort();
        }
      };
      await untilG(1);
      await hanging; // f's first webhook call is in the server, unanswered
      await store.addServer(newServer('g0', 'g'));
      await store.updateServer('g0', { event: 'Healthy' });
      await store.allocate({ fleet: 'g', compositionId: 'c', matchLabels: {}, metadata: {} });
      await untilG(2);
      expect(scaler.status().find((a) => a.fleetName === 'f')!.decisions).toBe(0);
    });

    it.each([
      ['slow', /did not answer within 1000 ms/],
      ['failing', /answered HTTP 500/],
      ['malformed JSON', /malformed JSON/],
      ['a reply with a bad field', /response\.replicas: must be an integer/],
    ])('%s: the previous decision is kept and the error surfaced in log and status', async (kind, error) => {
      let mode: string = 'good';
      const requests: Record<string, unknown>[] = [];
      handler = (_req, res, body) => {
        requests.push(body);
        if (mode === 'good') return reply(res, { response: { uid: uidOf(body), scale: true, replicas: 5 } });
        if (kind === 'slow')
          return void setTimeout(() => reply(res, { response: { uid: uidOf(body), scale: true, replicas: 1 } }), 5000);
        if (kind === 'failing') {
          res.statusCode = 500;
          return res.end('boom');
        }
        if (kind === 'malformed JSON') return res.end('{"response": ');
        return reply(res, { response: { uid: uidOf(body), scale: true, replicas: 'many' } });
      };
      await store.putFleet(fleetSpec('f', { replicas: 1 }));
      const logger = recordingLogger();
      const scaler = new FleetAutoscaler({
        store,
        logger,
        webhookMinIntervalMs: 0,
        autoscalers: [
          autoscaler(`type: Webhook\nwebhook: { url: "${url}", timeout: ${kind === 'slow' ? '1s' : '10s'} }`),
        ],
      });
      running = scaler.run(stop.signal);
      await untilFleet(store, (f) => f.replicas === 5);
      expect(requests[0]).toMatchObject({
        apiVersion: 'autoscaling.agones.dev/v1',
        kind: 'FleetAutoscaleReview',
        request: { name: 'f', status: { replicas: 1, readyReplicas: 0, allocatedReplicas: 0 } },
      });
      mode = 'bad';
      // Any change of the fleet triggers a decision, hence a webhook call, which now fails.
      await store.addServer(newServer('s0', 'f'));
      const warned = await logger.waitFor('autoscaler error; previous decision kept', (f) =>
        error.test(String(f.error)),
      );
      expect(warned.level).toBe('warn');
      expect(scaler.status()[0]).toMatchObject({
        desiredReplicas: 5,
        reason: 'webhook failed; previous decision kept',
      });
      expect(scaler.status()[0]!.lastError).toMatch(error);
      expect((await store.getFleet('f'))!.replicas).toBe(5);
      mode = 'good';
      await store.updateServer('s0', { event: 'Healthy' });
      await logger.waitFor('autoscaler recovered');
      expect(scaler.status()[0]!.lastError).toBeUndefined();
    });
  });
});

describe('FleetAutoscaler in virtual time (SimClock)', () => {
  it('holds a scale-down for the stabilisation window, scales up at once, and polls only when FixedInterval', async () => {
    const clock = new SimClock(T0);
    const store = new MemoryStore({ clock });
    await store.putFleet(fleetSpec('f', { replicas: 0 }));
    await readyServers(store, 4);
    const stop = new AbortController();
    const scaler = new FleetAutoscaler({
      store,
      clock,
      autoscalers: [
        autoscaler('type: Buffer\nbuffer: { bufferSize: 1 }', '  behavior: { scaleDownStabilization: 60s }\n'),
      ],
    });
    const running = scaler.run(stop.signal);
    await clock.idle();
    expect((await store.getFleet('f'))!.replicas).toBe(1);
    for (const c of ['a', 'b', 'c'])
      await store.allocate({ fleet: 'f', compositionId: c, matchLabels: {}, metadata: {} });
    await clock.idle();
    expect((await store.getFleet('f'))!.replicas).toBe(4); // up at once
    await clock.runUntil(T0 + 10_000);
    for (const c of ['a', 'b', 'c']) await store.release(c);
    await clock.idle(); // decided with 3 Draining: still 4
    expect(scaler.status()[0]!.reason).toBe('buffer 1 over 3 busy');
    for (const s of ['s0', 's1', 's2', 's3']) await store.updateServer(s, { event: 'Recycle' }).catch(() => undefined);
    await clock.runUntil(T0 + 69_999);
    expect((await store.getFleet('f'))!.replicas).toBe(4); // held by the window
    await clock.runUntil(T0 + 70_000);
    expect((await store.getFleet('f'))!.replicas).toBe(1);
    stop.abort();
    await running;

    // Agones-style: a 30 s poll ignores the change feed between polls.
    const polled = new FleetAutoscaler({
      store,
      clock,
      autoscalers: [
        autoscaler('type: Buffer\nbuffer: { bufferSize: 1 }', '  sync: { type: FixedInterval, interval: 30s }\n'),
      ],
    });
    const stop2 = new AbortController();
    const running2 = polled.run(stop2.signal);
    const start = clock.now();
    await clock.idle();
    await store.allocate({ fleet: 'f', compositionId: 'd', matchLabels: {}, metadata: {} });
    await clock.runUntil(start + 29_999);
    expect((await store.getFleet('f'))!.replicas).toBe(1);
    await clock.runUntil(start + 30_000);
    expect((await store.getFleet('f'))!.replicas).toBe(2);
    stop2.abort();
    await running2;
  });

  it('a Schedule opens and closes on its timer, with no event', async () => {
    const clock = new SimClock(Date.parse('2026-11-24T07:59:00Z'));
    const store = new MemoryStore({ clock });
    await store.putFleet(fleetSpec('f', { replicas: 1 }));
    const stop = new AbortController();
    const scaler = new FleetAutoscaler({
      store,
      clock,
      autoscalers: [
        autoscaler(
          `type: Chain
chain:
  - id: mornings
    type: Schedule
    schedule:
      activePeriod: { startCron: "0 8 * * *", duration: 2h }
      policy: { type: Buffer, buffer: { bufferSize: 6 } }
  - id: otherwise
    type: Buffer
    buffer: { bufferSize: 1 }`,
          '  behavior: { scaleDownStabilization: 0s }\n',
        ),
      ],
    });
    const running = scaler.run(stop.signal);
    await clock.runUntil(Date.parse('2026-11-24T07:59:59Z'));
    expect((await store.getFleet('f'))!.replicas).toBe(1);
    await clock.runUntil(Date.parse('2026-11-24T08:00:00Z'));
    expect((await store.getFleet('f'))!.replicas).toBe(6);
    expect(scaler.status()[0]!.reason).toMatch(/^chain mornings: in schedule: buffer 6/);
    await clock.runUntil(Date.parse('2026-11-24T10:00:00Z'));
    expect((await store.getFleet('f'))!.replicas).toBe(1);
    stop.abort();
    await running;
  });

  it('Predictive learns arrivals from the change feed and lets them age out of its window', async () => {
    const clock = new SimClock(T0);
    const store = new MemoryStore({ clock });
    await store.putFleet(fleetSpec('f', { replicas: 0 }));
    await readyServers(store, 5);
    const stop = new AbortController();
    const scaler = new FleetAutoscaler({
      store,
      clock,
      autoscalers: [
        autoscaler(
          'type: Predictive\npredictive: { coldStart: 10s, window: 1m, quantile: 0.99 }',
          '  behavior: { scaleDownStabilization: 0s }\n',
        ),
      ],
    });
    const running = scaler.run(stop.signal);
    await clock.idle();
    expect((await store.getFleet('f'))!.replicas).toBe(0); // no history: nothing kept Ready
    for (const c of ['a', 'b', 'c'])
      await store.allocate({ fleet: 'f', compositionId: c, matchLabels: {}, metadata: {} });
    await clock.idle();
    // 3 arrivals in the last cold start: Poisson(3) at q0.99 is 8, plus 3 busy.
    expect((await store.getFleet('f'))!.replicas).toBe(3 + 8);
    for (const c of ['a', 'b', 'c']) await store.release(c);
    await clock.runUntil(T0 + 30_000);
    // Still in the window: 0.5 arrivals and 0.5 recycled per cold start (3 of each over 6 slices);
    // P(A - R <= 2) = 0.99073 >= 0.99, so 2 Ready (+3 Draining).
    expect((await store.getFleet('f'))!.replicas).toBe(3 + 2);
    await clock.runUntil(T0 + 61_000);
    expect((await store.getFleet('f'))!.replicas).toBe(3); // aged out; only the Draining ones remain busy
    stop.abort();
    await running;
  });
});
