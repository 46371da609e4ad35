import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FleetError, jsonLogger, linkToken } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { linkV1 } from '@smelter-fleet/proto';
import { fleetSpec, issueCert, makeCa, newServer, type CertPair } from '@smelter-fleet/testing';
import { ClientError, createChannel, createClient, Metadata, Status } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CallerAuth, parseTokenList, type AuthOptions, type ReloadEvent } from './auth.js';
import { connectAllocator, type ConnectOptions } from './client.js';
import { startAllocatorServer, type AllocatorServer } from './server.js';

async function grpcError(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(ClientError);
    return e as ClientError;
  }
  throw new Error('expected a gRPC error');
}

function fleetError(fn: () => unknown): FleetError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetError);
    return e as FleetError;
  }
  throw new Error('expected a FleetError');
}

/** The next reload of `kind` (subscribe before changing the file). */
function nextReload(auth: CallerAuth, kind: ReloadEvent['kind']): Promise<ReloadEvent> {
  return new Promise((resolve) => {
    const off = auth.onReload((e) => {
      if (e.kind !== kind) return;
      off();
      resolve(e);
    });
  });
}

const tempDir = () => mkdtempSync(join(tmpdir(), 'smelter-fleet-auth-'));

describe('parseTokenList', () => {
  it('reads tokens, names and comments', () => {
    expect(parseTokenList('# ops\nalice:tok-a\n\n  tok-b  \r\nbob: tok-c\n')).toEqual([
      { name: 'alice', token: 'tok-a' },
      { name: 'token-line-4', token: 'tok-b' },
      { name: 'bob', token: 'tok-c' },
    ]);
  });

  it.each([
    ['a b sekrit\n', 'line 1'],
    ['ok\nbad name!:sekrit\n', 'line 2'],
    ['name:\n', 'line 1'],
  ])('names the bad line, never its content (%#)', (text, where) => {
    expect(() => parseTokenList(text)).toThrow(where);
    try {
      parseTokenList(text);
    } catch (e) {
      expect((e as Error).message).not.toMatch(/sekrit|bad name/);
    }
  });
});

describe('CallerAuth options', () => {
  it('refuses to run open unless insecure is explicit', async () => {
    await expect(CallerAuth.create({})).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    const open = await CallerAuth.create({ insecure: true });
    expect(open.check({}).principal).toBe('anonymous');
  });

  it.each<[AuthOptions, string]>([
    [{ insecure: true, tokensFile: '/x' }, 'insecure'],
    [{ tokensFile: '/x', tlsCertFile: '/c' }, 'tlsKeyFile'],
    [{ clientCaFile: '/ca' }, 'tlsCertFile'],
  ])('names the contradicting field (%#)', async (options, field) => {
    await expect(CallerAuth.create(options)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', field });
  });

  it('names an unreadable file', async () => {
    await expect(CallerAuth.create({ tokensFile: '/nonexistent/tokens' })).rejects.toThrow(
      'token list /nonexistent/tokens: cannot read: ENOENT',
    );
  });
});

describe('bearer tokens', () => {
  const auths: CallerAuth[] = [];
  afterAll(() => auths.forEach((a) => a.close()));
  async function tokenAuth(text: string, log: string[] = []) {
    const dir = tempDir();
    const file = join(dir, 'tokens');
    writeFileSync(file, text);
    const logger = jsonLogger({ level: 'debug', write: (l) => log.push(l) });
    const auth = await CallerAuth.create({ tokensFile: file, debounceMs: 5, pollIntervalMs: 60_000, logger });
    auths.push(auth);
    return { auth, dir, file };
  }

  it('accepts a listed token, refuses missing, malformed and unlisted ones', async () => {
    const { auth } = await tokenAuth('alice:secret-alice-0123456789\nsecret-anon-0123456789\n');
    expect(auth.check({ authorization: 'Bearer secret-alice-0123456789' })).toEqual({ principal: 'alice' });
    expect(auth.check({ authorization: 'bearer secret-anon-0123456789' })).toEqual({ principal: 'token-line-2' });
    for (const authorization of [
      undefined,
      '',
      'Basic YWxpY2U6cHc=',
      'Bearer',
      'Bearer secret-alice',
      'secret-alice-0123456789',
    ]) {
      const e = fleetError(() => auth.check({ authorization }));
      expect(e.code).toBe('UNAUTHENTICATED');
      expect(e.message).not.toContain('secret');
    }
  });

  it('re-reads a file rewritten in place: the old token is refused, the new one accepted', async () => {
    const log: string[] = [];
    const { auth, file } = await tokenAuth('old-token-0123456789\n', log);
    const reloaded = nextReload(auth, 'tokens');
    writeFileSync(file, 'new-token-0123456789\n');
    expect(await reloaded).toEqual({ kind: 'tokens', ok: true });
    expect(fleetError(() => auth.check({ authorization: 'Bearer old-token-0123456789' })).code).toBe('UNAUTHENTICATED');
    expect(auth.check({ authorization: 'Bearer new-token-0123456789' }).principal).toBe('token-line-1');
    expect(log.join('\n')).not.toMatch(/token-0123456789/);
  });

  it('follows an atomic rename, and keeps the previous list while the file is missing or bad', async () => {
    const log: string[] = [];
    const { auth, dir, file } = await tokenAuth('first-0123456789\n', log);
    let reloaded = nextReload(auth, 'tokens');
    writeFileSync(join(dir, '.tokens.tmp'), 'second-0123456789\n');
    renameSync(join(dir, '.tokens.tmp'), file);
    await reloaded;
    expect(auth.check({ authorization: 'Bearer second-0123456789' }).principal).toBe('token-line-1');

    reloaded = nextReload(auth, 'tokens');
    rmSync(file);
    expect(await reloaded).toMatchObject({ kind: 'tokens', ok: false, error: 'ENOENT' });
    expect(auth.check({ authorization: 'Bearer second-0123456789' }).principal).toBe('token-line-1');

    reloaded = nextReload(auth, 'tokens');
    writeFileSync(file, 'bad name!:third-0123456789\n');
    expect(await reloaded).toMatchObject({ ok: false });
    expect(auth.check({ authorization: 'Bearer second-0123456789' }).principal).toBe('token-line-1');
    expect(log.join('\n')).toMatch(/keeping the previous one/);
    expect(log.join('\n')).not.toMatch(/0123456789/);
  });

  it('follows a Kubernetes Secret mount update (..data symlink swapped by rename)', async () => {
    // The kubelet's AtomicWriter layout: tokens -> ..data/tokens, ..data -> ..<timestamp>/
    const dir = tempDir();
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'tokens'), 'ci:v1-token-0123456789\n');
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/tokens', join(dir, 'tokens'));
    const auth = await CallerAuth.create({ tokensFile: join(dir, 'tokens'), debounceMs: 5, pollIntervalMs: 60_000 });
    auths.push(auth);
    expect(auth.check({ authorization: 'Bearer v1-token-0123456789' }).principal).toBe('ci');

    const reloaded = nextReload(auth, 'tokens');
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'tokens'), 'ci:v2-token-0123456789\n');
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..v1'), { recursive: true });
    expect(await reloaded).toMatchObject({ ok: true });
    expect(auth.check({ authorization: 'Bearer v2-token-0123456789' }).principal).toBe('ci');
    expect(fleetError(() => auth.check({ authorization: 'Bearer v1-token-0123456789' })).code).toBe('UNAUTHENTICATED');
  });
});

describe('allocator gRPC with bearer tokens', () => {
  let store: MemoryStore;
  let server: AllocatorServer;
  let auth: CallerAuth;
  let file: string;
  const closers: (() => void)[] = [];
  const connect = (options: ConnectOptions = {}) => {
    const c = connectAllocator(server.address, options);
    closers.push(() => c.close());
    return c;
  };

  beforeAll(async () => {
    store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    await store.addServer(newServer('s1', 'f', { pid: 1 }));
    file = join(tempDir(), 'tokens');
    writeFileSync(file, 'backend:tok-one-0123456789\n');
    auth = await CallerAuth.create({ tokensFile: file, debounceMs: 5, pollIntervalMs: 60_000 });
    server = await startAllocatorServer({ store, auth, linkSecret: 'link-secret' });
  });
  afterAll(async () => {
    closers.forEach((c) => c());
    await server.close({ force: true });
    auth.close();
    await store.close();
  });

  it('serves a caller with a listed token; refuses one without or with a wrong one', async () => {
    const ok = connect({ token: 'tok-one-0123456789' });
    expect((await ok.fleet.listFleets({})).fleets.map((f) => f.name)).toEqual(['f']);
    expect((await ok.allocation.listAllocations({})).allocations).toEqual([]);
    for (const c of [connect(), connect({ token: 'tok-two-0123456789' })]) {
      const e = await grpcError(c.allocation.listAllocations({}));
      expect(e.code).toBe(Status.UNAUTHENTICATED);
      expect((await grpcError(c.fleet.listFleets({}))).code).toBe(Status.UNAUTHENTICATED);
    }
  });

  it('takes a rotated token list without a restart', async () => {
    const reloaded = nextReload(auth, 'tokens');
    writeFileSync(file, 'backend:tok-two-0123456789\n');
    await reloaded;
    expect((await grpcError(connect({ token: 'tok-one-0123456789' }).fleet.listFleets({}))).code).toBe(
      Status.UNAUTHENTICATED,
    );
    expect((await connect({ token: 'tok-two-0123456789' }).fleet.listFleets({})).fleets).toHaveLength(1);
  });

  it('leaves health and the sidecars’ link (its own link tokens) outside caller auth', async () => {
    const channel = createChannel(server.address);
    closers.push(() => channel.close());
    expect((await createClient(HealthDefinition, channel).check({ service: '' })).status).toBeDefined();
    const link = createClient(linkV1.FleetLinkServiceDefinition, channel);
    const stop = new AbortController();
    async function* requests() {
      yield linkV1.ConnectRequest.fromPartial({ register: { serverName: 's1' } });
      await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    }
    const metadata = Metadata({ authorization: `Bearer ${linkToken('link-secret', 's1')}` });
    for await (const response of link.connect(requests(), { metadata, signal: stop.signal })) {
      expect(response).toBeDefined();
      break;
    }
    stop.abort();
  });
});

describe('allocator gRPC with mTLS', () => {
  let serverCa: CertPair;
  let newServerCa: CertPair;
  let clientCaA: CertPair;
  let clientCaB: CertPair;
  let strangerCa: CertPair;
  let clientA: CertPair;
  let clientB: CertPair;
  let stranger: CertPair;
  let expired: CertPair;
  let dir: string;
  let store: MemoryStore;
  let auth: CallerAuth;
  let server: AllocatorServer;
  const log: string[] = [];
  const files = () => ({ cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), ca: join(dir, 'client-ca.crt') });
  const closers: (() => void)[] = [];
  const clientOf = (cert: CertPair | undefined, ca = serverCa) => {
    const c = connectAllocator(server.address, {
      tls: { ca: ca.cert, ...(cert && { cert: cert.cert, key: cert.key }) },
    });
    closers.push(() => c.close());
    return c;
  };
  const deadline = () => ({ signal: AbortSignal.timeout(10_000) });

  beforeAll(async () => {
    serverCa = makeCa('server CA');
    clientCaA = makeCa('client CA A');
    clientCaB = makeCa('client CA B');
    strangerCa = makeCa('stranger CA');
    clientA = issueCert(clientCaA, { commonName: 'backend-a', usage: 'client' });
    clientB = issueCert(clientCaB, { commonName: 'backend-b', usage: 'client' });
    stranger = issueCert(strangerCa, { commonName: 'stranger', usage: 'client' });
    expired = issueCert(clientCaA, { commonName: 'old', usage: 'client', days: -1 });
    const serverCert = issueCert(serverCa, { commonName: 'allocator', ips: ['127.0.0.1'], usage: 'server' });
    dir = tempDir();
    writeFileSync(files().cert, serverCert.cert);
    writeFileSync(files().key, serverCert.key);
    writeFileSync(files().ca, clientCaA.cert + clientCaB.cert);
    store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    auth = await CallerAuth.create({
      tlsCertFile: files().cert,
      tlsKeyFile: files().key,
      clientCaFile: files().ca,
      debounceMs: 20,
      pollIntervalMs: 60_000,
    });
    const logger = jsonLogger({ level: 'debug', write: (l) => log.push(l) });
    server = await startAllocatorServer({ store, auth, linkSecret: 'link-secret', linkAddress: '127.0.0.1:0', logger });
  }, 60_000);
  afterAll(async () => {
    closers.forEach((c) => c());
    await server.close({ force: true });
    auth.close();
    await store.close();
  });
  afterEach(() => closers.splice(0).forEach((c) => c()));

  it('accepts client certificates of every CA in the bundle, named by their verified common name', async () => {
    expect((await clientOf(clientA).fleet.listFleets({}, deadline())).fleets).toHaveLength(1);
    // A caller's own value of the name header is dropped: the name comes from the certificate.
    const spoofed = { ...deadline(), metadata: Metadata({ 'x-smelter-fleet-peer-cn': 'admin' }) };
    expect((await clientOf(clientB).fleet.listFleets({}, spoofed)).fleets).toHaveLength(1);
    const principals = log.map((l) => JSON.parse(l) as { msg: string; principal?: string });
    expect(principals.filter((l) => l.msg === 'caller').map((l) => l.principal)).toEqual([
      'cert:backend-a',
      'cert:backend-b',
    ]);
  });

  it.each([
    ['no client certificate', () => undefined],
    ['a certificate from an unknown CA', () => stranger],
    ['an expired certificate', () => expired],
  ])('refuses %s at the handshake', async (_, cert) => {
    const e = await grpcError(clientOf(cert()).fleet.listFleets({}, deadline()));
    expect(e.code).toBe(Status.UNAVAILABLE);
  });

  it('serves the link on its own plaintext listener', () => {
    expect(server.linkAddress).not.toBe(server.address);
    expect(server.linkAddress).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('rotates the client CA bundle and the server certificate without a restart', async () => {
    // The bundle drops CA A: new connections with A's certificate are refused, B's still accepted.
    let reloaded = nextReload(auth, 'certificates');
    writeFileSync(files().ca, clientCaB.cert);
    expect(await reloaded).toEqual({ kind: 'certificates', ok: true });
    expect((await grpcError(clientOf(clientA).fleet.listFleets({}, deadline()))).code).toBe(Status.UNAVAILABLE);
    expect((await clientOf(clientB).fleet.listFleets({}, deadline())).fleets).toHaveLength(1);

    // A new server certificate from a new CA, written the way cert-manager renews (atomic renames).
    newServerCa = makeCa('server CA 2');
    const renewed = issueCert(newServerCa, { commonName: 'allocator', ips: ['127.0.0.1'], usage: 'server' });
    reloaded = nextReload(auth, 'certificates');
    writeFileSync(join(dir, '.crt.tmp'), renewed.cert);
    writeFileSync(join(dir, '.key.tmp'), renewed.key);
    renameSync(join(dir, '.key.tmp'), files().key);
    renameSync(join(dir, '.crt.tmp'), files().cert);
    let event = await reloaded;
    // A change seen between the two renames is refused (key and certificate disagree) and the old pair kept.
    while (!event.ok) event = await nextReload(auth, 'certificates');
    expect((await clientOf(clientB, newServerCa).fleet.listFleets({}, deadline())).fleets).toHaveLength(1);
    expect((await grpcError(clientOf(clientB, serverCa).fleet.listFleets({}, deadline()))).code).toBe(
      Status.UNAVAILABLE,
    );
  }, 30_000);

  it('keeps the previous certificates when the new files are broken', async () => {
    const reloaded = nextReload(auth, 'certificates');
    writeFileSync(files().ca, 'not a certificate');
    expect(await reloaded).toMatchObject({ ok: false, error: expect.stringContaining('no PEM certificate') });
    expect((await clientOf(clientB, newServerCa).fleet.listFleets({}, deadline())).fleets).toHaveLength(1);
  });
});
