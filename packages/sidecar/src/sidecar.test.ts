import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import { linkToken, type FleetSpec, type ServerRecord } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { alive, fleetSpec, recordingLogger, untilServers } from '@smelter-fleet/testing';
import { runSidecar, type RunningSidecar } from './run.js';
import { startSdkServer } from './sdk-server.js';
import { Sidecar } from './sidecar.js';

jest.setTimeout(30_000);

const SECRET = 'sidecar-test';
const NAME = 'f-one';

/** One emulator process, one in-process sidecar, the real fleet link on a real allocator. */
class Harness {
  readonly store = new MemoryStore();
  readonly logger = recordingLogger();
  readonly runtime = new ProcessRuntime({ defaultCommand: [process.execPath, emulatorMainPath], stopGraceMs: 1000 });
  readonly stop = new AbortController();
  allocator!: AllocatorServer;
  sidecar!: RunningSidecar;
  server!: ServerRecord;

  async start(fleet: Partial<FleetSpec> = {}, emulatorEnv: Record<string, string> = {}): Promise<this> {
    // A 100 ms poll keeps the tests quick; a threshold of 10 keeps a loaded machine from failing Smelter (tests of
    // health failures set their own).
    const health = { ...fleetSpec('f').health, failureThreshold: 10 };
    await this.store.putFleet(fleetSpec('f', { replicas: 1, health, ...fleet }));
    this.allocator = await startAllocatorServer({ store: this.store, linkSecret: SECRET });
    const launched = await this.runtime.start({ name: NAME, fleet: 'f', command: [], env: emulatorEnv });
    this.server = await this.store.addServer({ ...launched, fleet: 'f', region: 'local', labels: {} });
    this.sidecar = await runSidecar(
      {
        serverName: NAME,
        smelterUrl: `http://${launched.address}:${launched.ports.api}`,
        link: { address: this.allocator.address, token: linkToken(SECRET, NAME) },
        sdk: { grpcPort: 0, httpPort: 0 },
        compositionSettleMs: 200,
        logger: this.logger,
      },
      this.stop.signal,
    );
    return this;
  }

  until(pred: (s: ServerRecord) => boolean): Promise<ServerRecord> {
    return untilServers(this.store, (all) => all.some((s) => s.name === NAME && pred(s))).then((all) =>
      all.find((s) => s.name === NAME)!,
    );
  }

  smelter(path: string, body?: unknown): Promise<Response> {
    return fetch(`http://${this.server.address}:${this.server.ports.api}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  }

  sdk(method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.sidecar.sdk.httpPort}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  }

  async allocate(compositionId = 'c1'): Promise<void> {
    await this.until((s) => s.state === 'Ready');
    await this.store.allocate({ fleet: 'f', compositionId, matchLabels: {}, metadata: { layout: 'grid' } });
  }

  async registerMp4(id: string): Promise<void> {
    const res = await this.smelter(`/api/output/${id}/register`, {
      type: 'mp4',
      path: `/tmp/${id}.mp4`,
      video: {
        resolution: { width: 640, height: 360 },
        encoder: { type: 'ffmpeg_h264' },
        initial: { root: { type: 'view' } },
      },
    });
    expect(res.status).toBe(200);
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.sidecar?.done;
    await this.runtime.close();
    await this.allocator?.close({ force: true });
    await this.store.close();
  }
}

describe('sidecar beside an emulator process, linked to a real allocator', () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it('reports Ready once Smelter answers, and Unhealthy at once when it crashes', async () => {
    h = await new Harness().start();
    await h.until((s) => s.state === 'Ready');
    await h.smelter('/_emulator/crash', {}).catch(() => undefined);
    const s = await h.until((x) => x.state === 'Unhealthy');
    expect(s.reason).toMatch(/refused/);
  });

  it('reports a hung Smelter Unhealthy after the failure threshold', async () => {
    h = await new Harness().start({ health: { ...fleetSpec('f').health, periodMs: 100, failureThreshold: 2 } });
    await h.until((s) => s.state === 'Ready');
    await h.smelter('/_emulator/hang', {});
    const s = await h.until((x) => x.state === 'Unhealthy');
    expect(s.reason).toBe('2 failed health checks in a row: GET /status: no answer within 100 ms');
  });

  it('keeps a slow starter Starting (not Unhealthy) until it answers', async () => {
    h = await new Harness();
    const states: string[] = [];
    const ac = new AbortController();
    const watching = (async () => {
      for await (const e of h.store.watch(ac.signal)) if (e.type === 'server') states.push(e.server.state);
    })();
    await h.start({}, { SMELTER_EMULATOR_START_DELAY_MS: '800' });
    await h.until((s) => s.state === 'Ready');
    ac.abort();
    await watching;
    expect(states).toEqual(['Starting', 'Ready']);
  });

  it('survives a dropped /ws: checks Smelter, reconnects, stays Ready', async () => {
    h = await new Harness().start();
    await h.until((s) => s.state === 'Ready');
    await h.logger.waitFor('Smelter /ws connected');
    const reconnected = h.logger.waitFor('Smelter /ws connected', undefined, h.logger.entries.length);
    await h.smelter('/_emulator/ws/drop', {});
    await reconnected;
    expect(await (await h.smelter('/_emulator/ws')).json()).toEqual({ open: 1, accepted: 2 });
    expect((await h.store.getServer(NAME))?.state).toBe('Ready');
  });

  it('ends the composition when every output is done, then recycles Smelter back to Ready', async () => {
    h = await new Harness().start();
    await h.allocate();
    await h.registerMp4('a');
    await h.registerMp4('b');
    await h.smelter('/_emulator/output/a/end', {});
    await h.smelter('/_emulator/output/b/error', { severity: 'critical' });
    const finished = await h.logger.waitFor('composition finished');
    expect(finished.fields.reason).toBe('every output ended: a done, b failed (critical error)');
    const back = await h.until((s) => s.state === 'Ready' && s.compositionId === undefined);
    expect(back.pid).toBe(h.server.pid); // recycled, not replaced
    expect(await h.store.getAllocation('c1')).toBeUndefined();
    const status = (await (await h.smelter('/status')).json()) as { outputs: unknown[] };
    expect(status.outputs).toEqual([]); // POST /api/reset ran
  });

  it('waits for a WHEP output (never OUTPUT_DONE) to be unregistered', async () => {
    h = await new Harness().start();
    await h.allocate();
    await h.registerMp4('rec');
    const whep = await h.smelter('/api/output/view/register', {
      type: 'whep_server',
      video: {
        encoder: { type: 'ffmpeg_h264' },
        resolution: { width: 640, height: 360 },
        initial: { root: { type: 'view' } },
      },
    });
    expect(whep.status).toBe(200);
    await h.logger.waitFor('composition outputs', (f) => f.outputs === 'rec live, view live');
    await h.smelter('/_emulator/output/rec/end', {});
    // rec is done, but the WHEP output still runs: the composition goes on until it is unregistered.
    await h.logger.waitFor('composition outputs', (f) => f.outputs === 'rec done, view live');
    expect((await h.store.getServer(NAME))?.state).toBe('Allocated');
    await h.smelter('/api/output/view/unregister', {});
    const finished = await h.logger.waitFor('composition finished');
    expect(finished.fields.reason).toBe('every output ended: rec done, view unregistered');
    await h.until((s) => s.state === 'Ready');
  });

  it('flushes after Release, then recycles; replaces the server when the reset fails (PIPELINE_DOWN)', async () => {
    h = await new Harness().start({ drain: { onRelease: 'Recycle', flushTimeMs: 200, maxDrainTimeMs: 60_000 } });
    await h.allocate('c1');
    await h.store.release('c1');
    await h.until((s) => s.state === 'Ready');
    await h.allocate('c2');
    await h.smelter('/_emulator/fail-next-reset', {});
    await h.store.release('c2');
    const s = await h.until((x) => x.state === 'Shutdown');
    expect(s.reason).toBe('drained');
    expect(h.logger.entries.some((e) => e.msg === 'Smelter reset failed; the server will be replaced')).toBe(true);
  });

  it('gives code in the image the allocation through GetServer, and FinishComposition ends it', async () => {
    h = await new Harness().start();
    await h.allocate('c1');
    const allocation = (await h.store.getAllocation('c1'))!;
    const view = async () =>
      ((await (await h.sdk('GET', '/server')).json()) as { server: Record<string, unknown> }).server;
    // The view reaches the sidecar over the link; wait for it through the SDK's watch stream.
    const watch = await h.sdk('GET', '/watch/server');
    const reader = watch.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (let buf = ''; !buf.includes('"Allocated"');) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`watch stream ended: ${buf}`);
      buf += chunk.value;
    }
    await reader.cancel();
    expect(await view()).toMatchObject({
      name: NAME,
      state: 'Allocated',
      compositionId: 'c1',
      compositionMetadata: { layout: 'grid' },
      compositionToken: allocation.token,
    });
    expect((await h.sdk('POST', '/composition/finish', { reason: 'show over' })).status).toBe(200);
    const finished = await h.logger.waitFor('composition finished');
    expect(finished.fields.reason).toBe('FinishComposition: show over');
    await h.until((s) => s.state === 'Ready');
    const again = await h.sdk('POST', '/composition/finish', {});
    expect(again.status).toBe(409);
  });

  it('SDK Shutdown on an Allocated server drains it: stopped after the composition, never recycled', async () => {
    h = await new Harness().start();
    await h.allocate('c1');
    await h.registerMp4('out');
    expect((await h.sdk('POST', '/shutdown', { reason: 'maintenance' })).status).toBe(200);
    const draining = await h.until((s) => s.state === 'Draining');
    expect(draining.reason).toBe('maintenance');
    expect((await h.store.getAllocation('c1'))?.serverName).toBe(NAME); // the composition runs on
    await h.smelter('/_emulator/output/out/end', {});
    const s = await h.until((x) => x.state === 'Shutdown');
    expect(s.reason).toBe('drained');
  });

  it('waits for SDK Ready when the fleet asks for it', async () => {
    h = await new Harness().start({ health: { ...fleetSpec('f').health, readiness: 'SdkReady' } });
    await h.logger.waitFor('Smelter health', (f) => f.health === 'healthy');
    expect((await h.store.getServer(NAME))?.state).toBe('Starting');
    expect((await h.sdk('POST', '/ready')).status).toBe(200);
    await h.until((s) => s.state === 'Ready');
  });

  it('turns Unhealthy when SDK health pings stop, if the fleet sets a timeout', async () => {
    h = await new Harness().start({ health: { ...fleetSpec('f').health, sdkHealthTimeoutMs: 300 } });
    await h.until((s) => s.state === 'Ready');
    expect((await h.sdk('POST', '/health')).status).toBe(200);
    const s = await h.until((x) => x.state === 'Unhealthy');
    expect(s.reason).toMatch(/^SDK health pings stopped \d+ ms ago$/);
  });

  it('sets SDK labels and annotations on the server, prefixed', async () => {
    h = await new Harness().start();
    await h.until((s) => s.state === 'Ready');
    expect((await h.sdk('PUT', '/metadata/label', { key: 'layout', value: 'grid-2x2' })).status).toBe(200);
    expect((await h.sdk('PUT', '/metadata/annotation', { key: 'note', value: 'any text / ✓' })).status).toBe(200);
    const s = await h.until((x) => x.annotations['sdk.smelterfleet.dev/note'] !== undefined);
    expect(s.labels['sdk.smelterfleet.dev/layout']).toBe('grid-2x2');
    expect(s.annotations['sdk.smelterfleet.dev/note']).toBe('any text / ✓');
  });

  it('answers bad SDK calls with 400/404/413 naming what is wrong, and keeps serving', async () => {
    h = await new Harness().start();
    const error = async (res: Response) => ({ status: res.status, ...((await res.json()) as { error: object }).error });
    expect(await error(await h.sdk('PUT', '/metadata/label', { key: 'bad key', value: 'x' }))).toMatchObject({
      status: 400,
      code: 'INVALID_ARGUMENT',
      field: 'key',
    });
    expect(await error(await h.sdk('PUT', '/metadata/label', { key: 'k', value: 'v'.repeat(64) }))).toMatchObject({
      status: 400,
      field: 'value',
    });
    expect(await error(await h.sdk('PUT', '/metadata/label', { key: 'k' }))).toMatchObject({
      status: 400,
      field: 'value',
    });
    expect(await error(await h.sdk('POST', '/ready', '{not json'))).toMatchObject({ status: 400, field: 'body' });
    expect(await error(await h.sdk('POST', '/ready', '[1,2]'))).toMatchObject({ status: 400, field: 'body' });
    expect(await error(await h.sdk('GET', '/nowhere'))).toMatchObject({ status: 404 });
    expect(await error(await h.sdk('GET', '/ready'))).toMatchObject({ status: 405 });
    const big = await h
      .sdk('PUT', '/metadata/annotation', { key: 'k', value: 'x'.repeat(300 * 1024) })
      .catch((e: Error) => e);
    if (big instanceof Response) expect(big.status).toBe(413);
    expect((await h.sdk('PUT', '/metadata/annotation', { key: 'k', value: 'x'.repeat(65 * 1024) })).status).toBe(400);
    expect((await h.sdk('GET', '/server')).status).toBe(200);
  });

  it('keeps the composition running through a lost fleet link and converges when it is back', async () => {
    h = await new Harness().start();
    await h.allocate('c1');
    await h.registerMp4('out');
    const port = h.allocator.port;
    const lost = h.logger.waitFor('fleet link lost; reconnecting', undefined, h.logger.entries.length);
    await h.allocator.close({ force: true });
    await lost;
    // While the fleet is away the composition ends; the sidecar remembers.
    await h.smelter('/_emulator/output/out/end', {});
    await h.logger.waitFor('composition finished');
    expect(alive(h.server.pid!)).toBe(true);
    h.allocator = await startAllocatorServer({ store: h.store, linkSecret: SECRET, address: `127.0.0.1:${port}` });
    const back = await h.until((s) => s.state === 'Ready' && s.compositionId === undefined);
    expect(back.pid).toBe(h.server.pid); // the same Smelter, never cut
    expect(await h.store.getAllocation('c1')).toBeUndefined();
  });
});

describe('SDK server', () => {
  it('listens on loopback only', async () => {
    const sidecar = new Sidecar({ serverName: 'x' });
    await expect(startSdkServer({ sidecar, host: '0.0.0.0', logger: recordingLogger() })).rejects.toThrow(
      /loopback only/,
    );
  });
});
