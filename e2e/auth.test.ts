import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { issueCert, makeCa } from '@smelter-fleet/testing';
import { request } from 'node:https';
import { mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, fleetYaml, start, stopAll, tempFile, type Running } from './helpers.js';

jest.setTimeout(150_000);

/** POST over HTTPS (fetch cannot present a client certificate). */
function httpsJson(
  url: string,
  tls: { ca: string; cert?: string; key?: string },
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, ...tls }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) }),
      );
    });
    req.once('error', reject);
    req.end(JSON.stringify(body));
  });
}

// Caller authentication of `smelter-fleet up` as users meet it: the generated API token, and mTLS.
describe('caller authentication of up', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('keeps a generated API token in a 0600 file, never prints it, and takes a rotated one without restart', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sf-e2e-auth-'));
    const fleetFile = tempFile('fleet.yaml', fleetYaml('tok', 1));
    const up = start([
      'up',
      '-f',
      fleetFile,
      '--allocator-port',
      '0',
      '--gateway-port',
      '0',
      '--state-dir',
      stateDir,
      '--log-level',
      'info',
    ]);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    const tokenFile = (await up.waitFor(/^API token: (\S+) \(new, mode 0600\)/)).match[1]!;
    await up.waitFor(/^status tok: Ready 1$/);
    expect(tokenFile).toBe(join(stateDir, 'api-token'));
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = /^up:(\S+)$/m.exec(readFileSync(tokenFile, 'utf8'))![1]!;
    expect(up.lines.join('\n')).not.toContain(token);

    const client = ['--allocator', allocator, '--state-dir', stateDir];
    const allocated = await cli(['allocate', ...client, '--fleet', 'tok', '--composition', 'a1', '--json']);
    expect(allocated.stderr).toBe('');
    expect((await cli(['get', '--allocator', allocator, '--composition', 'a1', '--token', token])).code).toBe(0);
    const none = await cli(['status', '--allocator', allocator], { SMELTER_FLEET_STATE_DIR: join(stateDir, 'none') });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/status: UNAUTHENTICATED: missing bearer token/);

    // The operator replaces the token (atomic rename): the old one is refused at once, the new one works.
    writeFileSync(join(stateDir, 'next'), 'ops:rotated-token-0123456789abcdef\n', { mode: 0o600 });
    const from = up.lines.length;
    renameSync(join(stateDir, 'next'), tokenFile);
    await up.waitFor(/"msg":"token list reloaded"/, from);
    const refused = await cli(['status', ...client, '--token', token]);
    expect(refused.stderr).toMatch(/UNAUTHENTICATED: invalid bearer token/);
    expect((await cli(['status', '--allocator', allocator, '--token', 'rotated-token-0123456789abcdef'])).code).toBe(0);
    expect((await cli(['release', ...client, '--composition', 'a1'])).code).toBe(0);
  });

  it('serves mTLS: client certificates required, sidecars link on their own plaintext port', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-e2e-mtls-'));
    const serverCa = makeCa('e2e server CA');
    const clientCa = makeCa('e2e client CA');
    const serverCert = issueCert(serverCa, { commonName: 'allocator', ips: ['127.0.0.1'], usage: 'server' });
    const clientCert = issueCert(clientCa, { commonName: 'backend', usage: 'client' });
    const files: Record<string, string> = {
      'server-ca.crt': serverCa.cert,
      'tls.crt': serverCert.cert,
      'tls.key': serverCert.key,
      'client-ca.crt': clientCa.cert,
      'client.crt': clientCert.cert,
      'client.key': clientCert.key,
    };
    for (const [name, pem] of Object.entries(files)) writeFileSync(join(dir, name), pem, { mode: 0o600 });
    const fleetFile = tempFile('fleet.yaml', fleetYaml('mtls', 1));
    const up = start([
      'up',
      '-f',
      fleetFile,
      '--allocator-port',
      '0',
      '--gateway-port',
      '0',
      '--tls-cert',
      join(dir, 'tls.crt'),
      '--tls-key',
      join(dir, 'tls.key'),
      '--client-ca',
      join(dir, 'client-ca.crt'),
    ]);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    const gateway = (await up.waitFor(/^gateway: (https:\/\/\S+)\/v1\/compositions/)).match[1]!;
    await up.waitFor(/^callers: must present a client certificate .* over TLS$/);
    // Ready means the sidecar's link reached the allocator (on the link port: it holds no client certificate).
    await up.waitFor(/^status mtls: Ready 1$/);
    expect(up.lines.some((l) => l.startsWith('API token:'))).toBe(false);

    const tls = ['--ca', join(dir, 'server-ca.crt')];
    const withCert = [...tls, '--cert', join(dir, 'client.crt'), '--key', join(dir, 'client.key')];
    const allocated = await cli([
      'allocate',
      '--allocator',
      allocator,
      ...withCert,
      '--fleet',
      'mtls',
      '--composition',
      'm1',
    ]);
    // (stderr may hold Node's DEP0123 warning: grpc-js sets the TLS server name to the IP address it dials.)
    expect(allocated.stderr).not.toMatch(/smelter-fleet/);
    expect(allocated.code).toBe(0);
    expect(allocated.stdout).toMatch(/allocated composition m1/);
    const noCert = await cli(['status', '--allocator', allocator, ...tls]);
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toMatch(/status: cannot reach the allocator/);
    expect((await cli(['release', '--allocator', allocator, ...withCert, '--composition', 'm1'])).code).toBe(0);

    // The REST mirror on the gateway's HTTPS listener: the same client certificate, the same refusal without one.
    const rest = (client?: { cert: string; key: string }) =>
      httpsJson(`${gateway}/v1/allocations`, { ca: serverCa.cert, ...client }, { fleet: 'mtls', composition_id: 'r1' });
    const stranger = issueCert(makeCa('stranger'), { commonName: 'mallory', usage: 'client' });
    expect((await rest()).status).toBe(401);
    expect((await rest(stranger)).status).toBe(403);
    const viaRest = await rest(clientCert);
    expect(viaRest.status).toBe(200);
    expect(viaRest.body).toMatchObject({ allocation: { composition_id: 'r1', fleet: 'mtls' } });
  });
});
