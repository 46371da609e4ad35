import { describe, expect, it } from '@jest/globals';
import { silentLogger } from '@smelter-fleet/core';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './args.js';
import { apiTokenFile, clientAuth, ensureApiToken, serverAuth } from './auth-options.js';

const tempDir = () => mkdtempSync(join(tmpdir(), 'smelter-fleet-cli-auth-'));

describe('ensureApiToken', () => {
  it('creates a private token file once and reuses it while it stays private', () => {
    const stateDir = join(tempDir(), 'state');
    const first = ensureApiToken(stateDir);
    expect(first).toEqual({ file: apiTokenFile(stateDir), created: true });
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    const text = readFileSync(first.file, 'utf8');
    expect(text).toMatch(/^up:[A-Za-z0-9_-]{43}$/m);
    expect(ensureApiToken(stateDir)).toEqual({ file: first.file, created: false });
    expect(readFileSync(first.file, 'utf8')).toBe(text);

    // Readable by others: a token that may have leaked is replaced, and the new file is private again.
    chmodSync(first.file, 0o644);
    expect(ensureApiToken(stateDir).created).toBe(true);
    expect(readFileSync(first.file, 'utf8')).not.toBe(text);
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
  });
});

describe('clientAuth', () => {
  const stateDir = tempDir();
  writeFileSync(apiTokenFile(stateDir), '# comment\nup:from-state-dir\n', { mode: 0o600 });
  const tokenFile = join(stateDir, 'mine');
  writeFileSync(tokenFile, 'me:from-token-file\nsecond\n');

  it('takes --token, then --token-file, then $SMELTER_FLEET_TOKEN, then the state directory', () => {
    const ctx = { envToken: 'from-env', defaultStateDir: stateDir };
    expect(clientAuth('x', { token: 'flag' }, ctx).token).toBe('flag');
    expect(clientAuth('x', { 'token-file': tokenFile }, ctx).token).toBe('from-token-file');
    expect(clientAuth('x', {}, ctx).token).toBe('from-env');
    expect(clientAuth('x', {}, { defaultStateDir: stateDir }).token).toBe('from-state-dir');
    expect(clientAuth('x', {}, { defaultStateDir: join(stateDir, 'none') })).toEqual({});
  });

  it('names what is wrong', () => {
    expect(() => clientAuth('get', { token: 'a', 'token-file': tokenFile }, {})).toThrow(UsageError);
    expect(() => clientAuth('get', { 'token-file': join(stateDir, 'missing') }, {})).toThrow(
      /get: --token-file .*missing: ENOENT/,
    );
    expect(() => clientAuth('get', { cert: 'c.pem' }, {})).toThrow(/--cert and --key go together/);
    expect(() => clientAuth('get', { ca: join(stateDir, 'nope.pem') }, {})).toThrow(/get: --ca .*nope\.pem: ENOENT/);
  });
});

describe('serverAuth', () => {
  it('refuses to run open, and names flags in errors', async () => {
    await expect(serverAuth('allocator', {}, silentLogger)).rejects.toThrow(
      /allocator: no caller authentication: give --auth-tokens FILE .* --insecure/,
    );
    await expect(serverAuth('allocator', { 'client-ca': '/ca.pem' }, silentLogger)).rejects.toThrow(
      'allocator: --tls-cert: client certificates (--client-ca) need TLS: give --tls-cert and --tls-key',
    );
    await expect(serverAuth('up', { 'auth-tokens': '/nonexistent' }, silentLogger)).rejects.toThrow(
      'up: token list /nonexistent: cannot read: ENOENT',
    );
    const open = await serverAuth('up', { insecure: true }, silentLogger);
    expect(open.insecure).toBe(true);
    open.close();
  });
});
