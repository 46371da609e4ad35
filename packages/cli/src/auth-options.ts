import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CallerAuth, firstToken, type ConnectOptions } from '@smelter-fleet/allocator';
import { FleetError, type Logger } from '@smelter-fleet/core';
import type { GatewayTls } from '@smelter-fleet/gateway';

/** A failure printed as is (exit code 1), like a CommandError (which this module cannot import: a cycle). */
const failed = (message: string) => new FleetError('FAILED_PRECONDITION', message);
import { UsageError } from './args.js';

/** Flags of the processes that serve the allocator (`up`, `allocator`). */
export const SERVER_AUTH_OPTIONS = {
  'auth-tokens': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'client-ca': { type: 'string' },
  insecure: { type: 'boolean' },
  'link-port': { type: 'string' },
} as const;

/** Flags of the client commands. */
export const CLIENT_AUTH_OPTIONS = {
  token: { type: 'string' },
  'token-file': { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;

export interface ServerAuthValues {
  'auth-tokens'?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  'client-ca'?: string | undefined;
  insecure?: boolean | undefined;
}

export interface ClientAuthValues {
  token?: string | undefined;
  'token-file'?: string | undefined;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  'state-dir'?: string | undefined;
}

export interface ClientAuthContext {
  /** $SMELTER_FLEET_TOKEN. */
  envToken?: string | undefined;
  /** Where `up` keeps its API token: $SMELTER_FLEET_STATE_DIR. Default `.smelter-fleet` under the working directory. */
  defaultStateDir?: string | undefined;
}

/** `.smelter-fleet` under the working directory. */
export const DEFAULT_STATE_DIR = '.smelter-fleet';

/** The file `up` writes its generated API token to, and client commands read by default. */
export const apiTokenFile = (stateDir: string) => join(stateDir, 'api-token');

/** Whether any caller-auth flag was given (without one, `up` makes its own token and `allocator` refuses to start). */
export const authFlagsGiven = (v: ServerAuthValues) =>
  v['auth-tokens'] !== undefined || v['client-ca'] !== undefined || v.insecure === true;

/** What callers must present, for the startup output (never a secret). */
export function describeAuth(auth: CallerAuth): string {
  if (auth.insecure) return 'NOT authenticated (--insecure): anyone who can connect may allocate';
  const parts = [];
  if (auth.requiresClientCertificate) parts.push('a client certificate from the --client-ca bundle (mTLS)');
  if (auth.requiresToken) parts.push('a bearer token from the token list');
  return `must present ${parts.join(' and ')}${auth.tls ? ', over TLS' : ''}`;
}

/** The gateway's HTTPS settings from the caller auth's certificates (same files, same rotation); none without TLS. */
export function gatewayTls(auth: CallerAuth): GatewayTls | undefined {
  if (!auth.tls) return undefined;
  return {
    current: () => auth.tlsFiles()!,
    onChange: (listener) => auth.onReload((e) => e.kind === 'certificates' && e.ok && listener()),
  };
}

/** The CallerAuth the flags describe; errors name the flag. */
export async function serverAuth(command: string, v: ServerAuthValues, logger: Logger): Promise<CallerAuth> {
  if (!authFlagsGiven(v))
    throw new UsageError(
      `${command}: no caller authentication: give --auth-tokens FILE (bearer tokens, one per line) or ` +
        '--client-ca FILE with --tls-cert/--tls-key (mTLS); --insecure serves anyone who can connect',
    );
  try {
    return await CallerAuth.create({
      ...(v['auth-tokens'] !== undefined && { tokensFile: v['auth-tokens'] }),
      ...(v['tls-cert'] !== undefined && { tlsCertFile: v['tls-cert'] }),
      ...(v['tls-key'] !== undefined && { tlsKeyFile: v['tls-key'] }),
      ...(v['client-ca'] !== undefined && { clientCaFile: v['client-ca'] }),
      ...(v.insecure && { insecure: true }),
      logger,
    });
  } catch (err) {
    if (!(err instanceof FleetError)) throw err;
    const flags: Record<string, string> = {
      tokensFile: '--auth-tokens',
      tlsCertFile: '--tls-cert',
      tlsKeyFile: '--tls-key',
      clientCaFile: '--client-ca',
      insecure: '--insecure',
    };
    const flag = flags[err.field ?? ''];
    if (flag) {
      const message = err.message
        .slice((err.field ?? '').length + 2)
        .replace(/\b(tokensFile|tlsCertFile|tlsKeyFile|clientCaFile)\b/g, (f) => flags[f]!);
      throw new UsageError(`${command}: ${flag}: ${message}`);
    }
    throw failed(`${command}: ${err.message}`);
  }
}

/**
 * `up`'s API token: kept in `<stateDir>/api-token` (0600, directory 0700) and reused while that file is private
 * and holds a token, so clients and several `up` runs over one state directory agree; generated otherwise.
 */
export function ensureApiToken(stateDir: string): { file: string; created: boolean } {
  const file = apiTokenFile(stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (existsSync(file)) {
    const s = statSync(file);
    const mine = typeof process.getuid !== 'function' || s.uid === process.getuid();
    if ((s.mode & 0o077) === 0 && mine) {
      try {
        if (firstToken(readFileSync(file, 'utf8')) !== undefined) return { file, created: false };
      } catch {
        // unparsable: replaced below
      }
    }
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(
    tmp,
    `# smelter-fleet up: API token (client commands read this file; keep it private)\nup:${randomBytes(32).toString('base64url')}\n`,
    { mode: 0o600 },
  );
  renameSync(tmp, file);
  return { file, created: true };
}

function readPem(command: string, flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw failed(`${command}: --${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** How a client command authenticates: --token, --token-file, $SMELTER_FLEET_TOKEN, else `up`'s token file. */
export function clientAuth(command: string, v: ClientAuthValues, ctx: ClientAuthContext): ConnectOptions {
  const options: ConnectOptions = {};
  if (v.token !== undefined && v['token-file'] !== undefined)
    throw new UsageError(`${command}: give --token or --token-file, not both`);
  const fromFile = (path: string, flag: string | undefined) => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if (flag === undefined) return undefined;
      throw failed(`${command}: ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    try {
      const token = firstToken(text);
      if (token === undefined) throw new Error('no token in it');
      return token;
    } catch (err) {
      throw failed(`${command}: token file ${path}: ${(err as Error).message}`);
    }
  };
  const token =
    v.token ??
    (v['token-file'] !== undefined ? fromFile(v['token-file'], '--token-file') : undefined) ??
    (ctx.envToken || undefined) ??
    fromFile(apiTokenFile(v['state-dir'] ?? ctx.defaultStateDir ?? DEFAULT_STATE_DIR), undefined);
  if (token !== undefined) options.token = token;
  if ((v.cert === undefined) !== (v.key === undefined))
    throw new UsageError(`${command}: --cert and --key go together (the client certificate for mTLS)`);
  if (v.ca !== undefined || v.cert !== undefined) {
    options.tls = {
      ...(v.ca !== undefined && { ca: readPem(command, 'ca', v.ca) }),
      ...(v.cert !== undefined && { cert: readPem(command, 'cert', v.cert) }),
      ...(v.key !== undefined && { key: readPem(command, 'key', v.key) }),
    };
  }
  return options;
}
