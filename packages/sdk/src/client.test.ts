import { afterEach, describe, expect, it, jest } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import { runSidecar, type RunningSidecar } from '@smelter-fleet/sidecar';
import { startEmulator, type EmulatorHandle } from '@smelter-fleet/smelter-emulator';
import { fleetSpec, freePort, recordingLogger } from '@smelter-fleet/testing';
import { ClientError, Status } from 'nice-grpc';
import { connectSdk, type Server, type SmelterFleetSdk } from './client.js';

jest.setTimeout(30_000);

const code = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ClientError);
    return { code: Status[(err as ClientError).code], details: (err as ClientError).details };
  }
  throw new Error('expected a ClientError');
};

async function until(sdk: SmelterFleetSdk, pred: (s: Server) => boolean): Promise<Server> {
  const ac = new AbortController();
  try {
    for await (const s of sdk.watchServer(ac.signal)) if (pred(s)) return s;
    throw new Error('watch ended');
  } finally {
    ac.abort();
  }
}

// The SDK client against a real sidecar in local mode (its in-process fleet) beside an emulator.
describe('@smelter-fleet/sdk', () => {
  let stop = new AbortController();
  let emulator: EmulatorHandle | undefined;
  let sidecar: RunningSidecar | undefined;
  let sdk: SmelterFleetSdk | undefined;

  async function startSidecar(grpcPort = 0): Promise<RunningSidecar> {
    emulator = await startEmulator({ apiPort: 0, whipWhepPort: 0, rtmpPort: 0, log: () => {} });
    sidecar = await runSidecar(
      {
        serverName: 'dev',
        smelterUrl: emulator.url,
        local: { fleet: fleetSpec('local', { replicas: 1 }) },
        sdk: { grpcPort, httpPort: 0 },
        logger: recordingLogger(),
      },
      stop.signal,
    );
    return sidecar;
  }

  afterEach(async () => {
    sdk?.close();
    stop.abort();
    await sidecar?.done;
    await emulator?.close();
    [stop, sdk, sidecar, emulator] = [new AbortController(), undefined, undefined, undefined];
  });

  it('waits for a sidecar that starts after the app (bounded retry)', async () => {
    const port = await freePort();
    sdk = connectSdk({ env: { SMELTER_FLEET_SDK_GRPC_PORT: String(port) }, waitForSidecarMs: 20_000 });
    const early = sdk.setLabel('layout', 'grid');
    await startSidecar(port);
    await early;
    const s = await until(sdk, (x) => x.labels['sdk.smelterfleet.dev/layout'] === 'grid');
    expect(s.name).toBe('dev');
  });

  it('gives up after waitForSidecarMs with UNAVAILABLE, and honours an abort at once', async () => {
    sdk = connectSdk({ address: `127.0.0.1:${await freePort()}`, waitForSidecarMs: 300 });
    expect((await code(sdk.ready())).code).toBe('UNAVAILABLE');
    const ac = new AbortController();
    const pending = sdk.getServer({ signal: ac.signal });
    ac.abort();
    await expect(pending).rejects.toThrow();
  });

  it('gets INVALID_ARGUMENT naming the field for bad labels, too-large values and garbage bytes', async () => {
    const { sdk: ports } = await startSidecar();
    sdk = connectSdk({ address: `127.0.0.1:${ports.grpcPort}` });
    expect(await code(sdk.setLabel('bad key', 'v'))).toEqual({
      code: 'INVALID_ARGUMENT',
      details: expect.stringMatching(/^key: /),
    });
    expect(await code(sdk.setLabel('k', 'bad value'))).toEqual({
      code: 'INVALID_ARGUMENT',
      details: expect.stringMatching(/^value: /),
    });
    expect(await code(sdk.setAnnotation('k', 'x'.repeat(300 * 1024)))).toEqual({
      code: 'INVALID_ARGUMENT',
      details: 'value: must be at most 65536 bytes',
    });
    // Raw bytes that are no protobuf message at all.
    const raw = new grpc.Client(`127.0.0.1:${ports.grpcPort}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        '/smelterfleet.sdk.v1.SDK/SetLabel',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]),
        (e) => resolve(e!),
      ),
    );
    raw.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/SetLabel request is not a valid protobuf message/);
    // Still serving.
    expect((await sdk.getServer()).name).toBe('dev');
  });

  it('follows an allocation: metadata and token arrive, FinishComposition ends it', async () => {
    const running = await startSidecar();
    sdk = connectSdk({ address: `127.0.0.1:${running.sdk.grpcPort}` });
    await until(sdk, (s) => s.state === 'Ready');
    const res = await fetch(`http://127.0.0.1:${running.sdk.httpPort}/local/allocate`, {
      method: 'POST',
      body: JSON.stringify({ composition_id: 'show-1', metadata: { title: 'Finals' } }),
    });
    expect(res.status).toBe(200);
    const allocated = await until(sdk, (s) => s.state === 'Allocated');
    expect(allocated).toMatchObject({ compositionId: 'show-1', compositionMetadata: { title: 'Finals' } });
    expect(allocated.compositionToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await sdk.finishComposition('done');
    const back = await until(sdk, (s) => s.state === 'Ready');
    expect(back.compositionId).toBe('');
    expect(await code(sdk.finishComposition())).toMatchObject({ code: 'FAILED_PRECONDITION' });
    const bad = await fetch(`http://127.0.0.1:${running.sdk.httpPort}/local/allocate`, { method: 'POST', body: '{}' });
    expect(bad.status).toBe(400);
  });

  it('keeps health pings going until aborted', async () => {
    const running = await startSidecar();
    sdk = connectSdk({ address: `127.0.0.1:${running.sdk.grpcPort}` });
    const ac = new AbortController();
    const pinging = sdk.keepHealthy(50, ac.signal);
    await until(sdk, (s) => s.state === 'Ready');
    ac.abort();
    await pinging;
  });
});
