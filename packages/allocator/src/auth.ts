import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket } from 'node:tls';
import { FleetError, invalidArgument, silentLogger, type Logger } from '@smelter-fleet/core';
import type * as GrpcJs from '@grpc/grpc-js';
import { createRequire } from 'node:module';
import type { ServerMiddleware } from 'nice-grpc';

// grpc-js as nice-grpc loads it: the instance whose server takes our credentials, and one this package has at
// run time through nice-grpc (its own @grpc/grpc-js entry is a devDependency, for tests).
const grpc = createRequire(createRequire(import.meta.url).resolve('nice-grpc'))('@grpc/grpc-js') as typeof GrpcJs;

/** How callers of the allocator (gRPC AllocationService/FleetService and the REST mirror) prove who they are. */
export interface AuthOptions {
  /**
   * Bearer token list: one token per line, `name:token` to name its holder (the name is what logs show),
   * `#` starts a comment. Re-read when it changes (atomic renames and Kubernetes Secret mounts included).
   * Default: no token check.
   */
  tokensFile?: string;
  /**
   * PEM bundle of the CAs whose client certificates are accepted (one or several). When set, every connection
   * must present a client certificate one of them signed (mTLS). Needs `tlsCertFile` and `tlsKeyFile`.
   * Re-read when it changes. Default: no client certificate asked for.
   */
  clientCaFile?: string;
  /** PEM server certificate (chain) for TLS; with `tlsKeyFile`. Re-read when it changes. Default: plaintext. */
  tlsCertFile?: string;
  /** PEM private key of `tlsCertFile`. */
  tlsKeyFile?: string;
  /** Accept every caller without checking anything. Must be explicit; logs a warning once. Default false. */
  insecure?: boolean;
  /** Files are also re-checked this often, in case a change event was missed (network filesystems), ms. Default 10_000. */
  pollIntervalMs?: number;
  /** Quiet time after a change event before files are re-read, coalescing multi-file updates, ms. Default 50. */
  debounceMs?: number;
  /** Default: silent. Tokens and keys are never logged. */
  logger?: Logger;
}

/** What a caller presented, whatever the protocol. */
export interface AuthRequest {
  /** The `Authorization` header (HTTP) or metadata value (gRPC). */
  authorization?: string | undefined;
  /** Whether the connection carries a client certificate verified against the client CA bundle. */
  peerCertificateAuthorized?: boolean | undefined;
  /** Whether the connection carries a client certificate at all (verified or not). */
  peerCertificatePresent?: boolean | undefined;
  /** The client certificate's subject common name, for the principal's name. */
  peerCommonName?: string | undefined;
}

export interface AuthResult {
  /** Who called: the token's name, `cert:<common name>`, or `anonymous` (insecure). Safe to log. */
  principal: string;
}

/** A reload of the token list or the certificates; `ok: false` means the previous one is kept. */
export interface ReloadEvent {
  kind: 'tokens' | 'certificates';
  ok: boolean;
  error?: string;
}

interface TokenEntry {
  name: string;
  digest: Buffer;
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest();
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$/;

/** The tokens of a token list file's text (see AuthOptions.tokensFile); errors name the line, never its content. */
export function parseTokenList(text: string): { name: string; token: string }[] {
  const out: { name: string; token: string }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const name = colon >= 0 ? line.slice(0, colon).trim() : `token-line-${i + 1}`;
    const token = colon >= 0 ? line.slice(colon + 1).trim() : line;
    if (colon >= 0 && !TOKEN_NAME.test(name))
      throw new Error(`line ${i + 1}: a token's name must be letters, digits, '.', '_', '@' or '-'`);
    if (token === '' || /\s/.test(token)) throw new Error(`line ${i + 1}: a token is one word without spaces`);
    out.push({ name, token });
  });
  return out;
}

/** The first token of a token list file (what a client sends), or undefined when it holds none. */
export function firstToken(text: string): string | undefined {
  return parseTokenList(text)[0]?.token;
}

interface CertificateSet {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

function pemCertificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${what}: no PEM certificate in it`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new Error(`${what}: certificate ${i + 1} does not parse: ${(err as Error).message}`);
    }
  });
}

/** Reads and checks a certificate set: parses, the key matches the certificate. Throws naming the file. */
function loadCertificates(files: { cert: string; key: string; ca: string | undefined }): CertificateSet {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = read(files.cert, 'TLS certificate');
  const key = read(files.key, 'TLS key');
  const ca = files.ca === undefined ? undefined : read(files.ca, 'client CA bundle');
  pemCertificates(cert.toString('utf8'), `TLS certificate ${files.cert}`);
  if (ca) pemCertificates(ca.toString('utf8'), `client CA bundle ${files.ca}`);
  try {
    createSecureContext({ cert, key, ...(ca && { ca }) });
  } catch (err) {
    // Typically a certificate rewritten before its key: the next change event brings the pair together.
    throw new Error(`TLS certificate ${files.cert} and key ${files.key}: ${(err as Error).message}`);
  }
  return { cert, key, ca };
}

/**
 * A grpc-js CertificateProvider over our checked certificate set. grpc-js' own FileWatcherCertificateProvider
 * publishes `null` (the server then drops every new connection) when a read fails, and publishes a new
 * certificate before its key; this one only ever publishes a complete, valid set and keeps the last one otherwise.
 */
class CertificateSetProvider implements GrpcJs.experimental.CertificateProvider {
  private caListeners = new Set<GrpcJs.experimental.CaCertificateUpdateListener>();
  private identityListeners = new Set<GrpcJs.experimental.IdentityCertificateUpdateListener>();
  constructor(public current: CertificateSet) {}

  update(set: CertificateSet) {
    this.current = set;
    for (const l of this.identityListeners) l({ certificate: set.cert, privateKey: set.key });
    if (set.ca) for (const l of this.caListeners) l({ caCertificate: set.ca });
  }

  // grpc-js registers its watcher only after adding the listener: the first update must come later.
  addCaCertificateListener(listener: GrpcJs.experimental.CaCertificateUpdateListener) {
    this.caListeners.add(listener);
    const ca = this.current.ca;
    if (ca) process.nextTick(() => this.caListeners.has(listener) && listener({ caCertificate: ca }));
  }
  removeCaCertificateListener(listener: GrpcJs.experimental.CaCertificateUpdateListener) {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: GrpcJs.experimental.IdentityCertificateUpdateListener) {
    this.identityListeners.add(listener);
    const { cert, key } = this.current;
    process.nextTick(() => this.identityListeners.has(listener) && listener({ certificate: cert, privateKey: key }));
  }
  removeIdentityCertificateListener(listener: GrpcJs.experimental.IdentityCertificateUpdateListener) {
    this.identityListeners.delete(listener);
  }
}

/** Identity of a file's content as far as stat can tell (follows symlinks, so a `..data` swap shows). */
function signature(path: string): string {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch (err) {
    return `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

/** Calls `onChange` (debounced) when any of `paths` may have changed: fs.watch on their directories, plus a poll. */
class FilesWatch {
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout;
  constructor(paths: string[], debounceMs: number, pollIntervalMs: number, onChange: () => void, logger: Logger) {
    const schedule = () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(onChange, debounceMs);
    };
    for (const dir of new Set(paths.map((p) => dirname(resolve(p))))) {
      try {
        const w = watch(dir, { persistent: false }, schedule);
        w.on('error', (err) =>
          logger.warn('cannot watch a credentials directory; polling only', { dir, error: err.message }),
        );
        this.watchers.push(w);
      } catch (err) {
        logger.warn('cannot watch a credentials directory; polling only', { dir, error: (err as Error).message });
      }
    }
    this.poll = setInterval(onChange, pollIntervalMs);
    this.poll.unref();
  }
  close() {
    clearTimeout(this.timer);
    clearInterval(this.poll);
    for (const w of this.watchers) w.close();
  }
}

/**
 * Caller authentication, shared by the gRPC server (`grpcAuthMiddleware`, `serverCredentials()`) and HTTP
 * (`check`, or `expressAuth`). Build it with `CallerAuth.create(options)`; `close()` stops watching files.
 */
export class CallerAuth {
  /** Listed tokens by the hex of their SHA-256 digest. */
  private tokens = new Map<string, TokenEntry>();
  private tokenSignature = '';
  private certSignature = '';
  private provider: CertificateSetProvider | undefined;
  private credentials: GrpcJs.ServerCredentials | undefined;
  private watch: FilesWatch | undefined;
  private listeners = new Set<(e: ReloadEvent) => void>();
  private reloading: Promise<void> = Promise.resolve();
  private readonly logger: Logger;

  /** Whether callers must send a bearer token from the list. */
  readonly requiresToken: boolean;
  /** Whether callers must present a client certificate signed by a listed CA. */
  readonly requiresClientCertificate: boolean;
  /** Whether the gRPC listener serves TLS. */
  readonly tls: boolean;
  readonly insecure: boolean;

  private constructor(private readonly options: AuthOptions) {
    this.logger = options.logger ?? silentLogger;
    this.requiresToken = options.tokensFile !== undefined;
    this.requiresClientCertificate = options.clientCaFile !== undefined;
    this.tls = options.tlsCertFile !== undefined;
    this.insecure = options.insecure === true;
  }

  /** Checks the options, reads the files (failing with a message naming the file) and starts watching them. */
  static async create(options: AuthOptions): Promise<CallerAuth> {
    const { tokensFile, clientCaFile, tlsCertFile, tlsKeyFile } = options;
    const any = [tokensFile, clientCaFile, tlsCertFile, tlsKeyFile].some((f) => f !== undefined);
    if (options.insecure && any)
      throw invalidArgument('insecure', 'cannot be combined with tokensFile, clientCaFile or TLS files');
    if (!options.insecure && tokensFile === undefined && clientCaFile === undefined)
      throw new FleetError(
        'FAILED_PRECONDITION',
        'no caller authentication configured: give a token list file, or a client CA bundle (mTLS), ' +
          'or say insecure explicitly',
      );
    if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined))
      throw invalidArgument(
        tlsCertFile === undefined ? 'tlsCertFile' : 'tlsKeyFile',
        'TLS needs both a certificate and a key',
      );
    if (clientCaFile !== undefined && tlsCertFile === undefined)
      throw invalidArgument(
        'tlsCertFile',
        'client certificates (clientCaFile) need TLS: give tlsCertFile and tlsKeyFile',
      );
    const auth = new CallerAuth(options);
    if (auth.insecure) {
      auth.logger.warn('caller authentication is OFF (insecure): anyone who can reach the allocator can use it');
      return auth;
    }
    const paths: string[] = [];
    if (tokensFile !== undefined) {
      paths.push(tokensFile);
      auth.tokenSignature = signature(tokensFile);
      let text: string;
      try {
        text = await readFile(tokensFile, 'utf8');
      } catch (err) {
        throw new FleetError(
          'FAILED_PRECONDITION',
          `token list ${tokensFile}: cannot read: ${(err as NodeJS.ErrnoException).code}`,
        );
      }
      try {
        auth.setTokens(parseTokenList(text));
      } catch (err) {
        throw new FleetError('FAILED_PRECONDITION', `token list ${tokensFile}: ${(err as Error).message}`);
      }
    }
    if (tlsCertFile !== undefined && tlsKeyFile !== undefined) {
      const files = { cert: tlsCertFile, key: tlsKeyFile, ca: clientCaFile };
      paths.push(tlsCertFile, tlsKeyFile, ...(clientCaFile ? [clientCaFile] : []));
      auth.certSignature = auth.certFilesSignature();
      try {
        auth.provider = new CertificateSetProvider(loadCertificates(files));
      } catch (err) {
        throw new FleetError('FAILED_PRECONDITION', (err as Error).message);
      }
      // The first argument is the identity provider (grpc-js 1.14 names its parameters the other way round).
      auth.credentials = grpc.experimental.createCertificateProviderServerCredentials(
        auth.provider,
        clientCaFile ? auth.provider : null,
        clientCaFile !== undefined,
      );
    }
    auth.watch = new FilesWatch(
      paths,
      options.debounceMs ?? 50,
      options.pollIntervalMs ?? 10_000,
      () => void auth.reload(),
      auth.logger,
    );
    return auth;
  }

  private certFilesSignature(): string {
    const { tlsCertFile, tlsKeyFile, clientCaFile } = this.options;
    return [tlsCertFile, tlsKeyFile, clientCaFile].map((p) => (p === undefined ? '' : signature(p))).join('|');
  }

  private setTokens(list: { name: string; token: string }[]) {
    const tokens = new Map<string, TokenEntry>();
    for (const { name, token } of list) {
      const digest = sha256(token);
      if (!tokens.has(digest.toString('hex'))) tokens.set(digest.toString('hex'), { name, digest });
    }
    this.tokens = tokens;
    if (list.length === 0) this.logger.warn('the token list holds no token: every token caller is refused');
  }

  /** Re-reads whatever changed since the last read; one reload at a time. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadNow());
    return this.reloading;
  }

  private async reloadNow(): Promise<void> {
    const { tokensFile, tlsCertFile, tlsKeyFile, clientCaFile } = this.options;
    if (tokensFile !== undefined) {
      const sig = signature(tokensFile);
      if (sig !== this.tokenSignature) {
        this.tokenSignature = sig;
        try {
          const list = parseTokenList(await readFile(tokensFile, 'utf8'));
          this.setTokens(list);
          this.logger.info('token list reloaded', { file: tokensFile, tokens: list.length });
          this.emit({ kind: 'tokens', ok: true });
        } catch (err) {
          const error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
          this.logger.warn('token list unreadable; keeping the previous one', { file: tokensFile, error });
          this.emit({ kind: 'tokens', ok: false, error });
        }
      }
    }
    if (this.provider && tlsCertFile !== undefined && tlsKeyFile !== undefined) {
      const sig = this.certFilesSignature();
      if (sig !== this.certSignature) {
        this.certSignature = sig;
        try {
          this.provider.update(loadCertificates({ cert: tlsCertFile, key: tlsKeyFile, ca: clientCaFile }));
          this.logger.info('TLS certificates reloaded', { certFile: tlsCertFile, clientCaFile });
          this.emit({ kind: 'certificates', ok: true });
        } catch (err) {
          const error = (err as Error).message;
          this.logger.warn('TLS certificates not reloaded; keeping the previous ones', { error });
          this.emit({ kind: 'certificates', ok: false, error });
        }
      }
    }
  }

  private emit(e: ReloadEvent) {
    for (const l of this.listeners) l(e);
  }

  /** Calls `listener` after each reload attempt (from a file change). Returns the unsubscribe function. */
  onReload(listener: (e: ReloadEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The current certificate set (after every successful reload), for an HTTPS listener serving the same callers
   * (the gateway's REST mirror); undefined without TLS.
   */
  tlsFiles(): Readonly<{ cert: Buffer; key: Buffer; ca: Buffer | undefined }> | undefined {
    return this.provider?.current;
  }

  /** gRPC server credentials: TLS (with client certificates required under mTLS), rotating with the files; else plaintext. */
  serverCredentials(): GrpcJs.ServerCredentials {
    return this.credentials ?? grpc.ServerCredentials.createInsecure();
  }

  /**
   * Decides whether a caller may go on. Every configured mechanism must pass: a verified client certificate
   * (mTLS) and/or a listed bearer token. Throws FleetError UNAUTHENTICATED (nothing or a wrong credential
   * presented) or PERMISSION_DENIED (a client certificate no listed CA signed). Never echoes a token.
   */
  check(req: AuthRequest): AuthResult {
    if (this.insecure) return { principal: 'anonymous' };
    let principal: string | undefined;
    if (this.requiresClientCertificate) {
      if (!req.peerCertificateAuthorized) {
        if (req.peerCertificatePresent)
          throw new FleetError('PERMISSION_DENIED', 'client certificate not signed by an allowed CA');
        throw new FleetError('UNAUTHENTICATED', 'a client certificate (mTLS) is required');
      }
      principal = `cert:${req.peerCommonName ?? 'unknown'}`;
    }
    if (this.requiresToken) {
      const header = req.authorization;
      if (header === undefined || header === '')
        throw new FleetError('UNAUTHENTICATED', 'missing bearer token (authorization: Bearer <token>)');
      const m = /^Bearer +(\S+) *$/i.exec(header);
      if (!m) throw new FleetError('UNAUTHENTICATED', 'authorization: expected "Bearer <token>"');
      const digest = sha256(m[1]!);
      let name: string | undefined;
      // Looked up by digest: lookup time depends on the presented token's SHA-256 only, which tells an attacker
      // nothing about any listed token (no byte-by-byte guessing); the final comparison is constant-time too.
      const entry = this.tokens.get(digest.toString('hex'));
      if (entry && timingSafeEqual(entry.digest, digest)) name = entry.name;
      if (name === undefined) throw new FleetError('UNAUTHENTICATED', 'invalid bearer token');
      principal = principal ? `${principal}+${name}` : name;
    }
    return { principal: principal ?? 'anonymous' };
  }

  close() {
    this.watch?.close();
    this.listeners.clear();
  }
}

/**
 * nice-grpc middleware checking callers with `auth`: the bearer token from the `authorization` metadata; under
 * mTLS, the transport has already refused connections without a verified client certificate.
 */
export function grpcAuthMiddleware(auth: CallerAuth, logger: Logger = silentLogger): ServerMiddleware {
  return async function* (call, context) {
    try {
      const { principal } = auth.check({
        authorization: context.metadata.get('authorization'),
        peerCertificateAuthorized: auth.requiresClientCertificate,
        peerCertificatePresent: auth.requiresClientCertificate,
        peerCommonName: context.metadata.get(PEER_CN_METADATA),
      });
      logger.debug('caller', { method: call.method.path, principal });
    } catch (err) {
      logger.warn('caller refused', { method: call.method.path, peer: context.peer, reason: (err as Error).message });
      throw err;
    }
    return yield* call.next(call.request, context);
  };
}

/** Set by the allocator on each call from the verified client certificate (a caller's own value is dropped). */
export const PEER_CN_METADATA = 'x-smelter-fleet-peer-cn';

/**
 * grpc-js server interceptor copying the client certificate's common name into the call's metadata
 * (PEER_CN_METADATA), where nice-grpc middleware can read it; whatever a caller sent under that key is dropped.
 */
export const peerCertificateInterceptor: GrpcJs.ServerInterceptor = (_method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          metadata.remove(PEER_CN_METADATA);
          const cn: unknown = call.getAuthContext().sslPeerCertificate?.subject?.CN;
          const name = Array.isArray(cn) ? (cn[0] as unknown) : cn;
          if (typeof name === 'string' && name !== '') metadata.set(PEER_CN_METADATA, name);
          nextMetadata(metadata);
        },
      }),
  });

interface HttpRequestLike {
  headers: { authorization?: string | undefined };
  socket: Socket;
}
interface HttpResponseLike {
  status(code: number): HttpResponseLike;
  setHeader(name: string, value: string): unknown;
  json(body: unknown): unknown;
}

/** What an HTTP request presented: its Authorization header and, on a TLS socket, its client certificate. */
export function httpAuthRequest(req: HttpRequestLike): AuthRequest {
  const tlsSocket = req.socket instanceof TLSSocket ? req.socket : undefined;
  const peer = tlsSocket?.getPeerCertificate(false);
  const present = peer !== undefined && Object.keys(peer).length > 0;
  const cn: unknown = present ? peer.subject?.CN : undefined;
  const name = Array.isArray(cn) ? (cn[0] as unknown) : cn;
  return {
    authorization: req.headers.authorization,
    peerCertificateAuthorized: tlsSocket?.authorized === true,
    peerCertificatePresent: present,
    peerCommonName: typeof name === 'string' ? name : undefined,
  };
}

/**
 * Express middleware: refuses with 401 (UNAUTHENTICATED, with `WWW-Authenticate: Bearer`) or 403
 * (PERMISSION_DENIED) and a JSON body `{error: {code, message}}`; otherwise sets `res.locals.principal`.
 */
export function expressAuth(auth: CallerAuth, logger: Logger = silentLogger) {
  return (
    req: HttpRequestLike & { method?: string; url?: string },
    res: HttpResponseLike & { locals?: Record<string, unknown> },
    next: () => void,
  ) => {
    try {
      const { principal } = auth.check(httpAuthRequest(req));
      if (res.locals) res.locals.principal = principal;
    } catch (err) {
      if (!(err instanceof FleetError)) throw err;
      logger.warn('caller refused', { method: req.method, path: req.url, reason: err.message });
      const status = err.code === 'PERMISSION_DENIED' ? 403 : 401;
      if (status === 401 && auth.requiresToken) res.setHeader('WWW-Authenticate', 'Bearer');
      res.status(status).json({ error: { code: err.code, message: err.message } });
      return;
    }
    next();
  };
}
