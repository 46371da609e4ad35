import { Agent, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { holdsComposition, isFleetError, silentLogger, type Logger, type Store } from '@smelter-fleet/core';
import express, { type Router } from 'express';
import { forward, sendError, type GatewayErrorBody, type Upstream } from './proxy.js';
import { bearerToken, parseProxyPath, tokenMatches } from './proxy-path.js';
import { clientWebSocketServer, proxyWebSocket, rejectUpgrade, type WsPair } from './proxy-ws.js';

export interface GatewayOptions {
  /** Routing and token truth, read on every request (so a release stops routing at once on every replica). */
  store: Store;
  /** Interface to bind. Default '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Default: silent. Tokens and Authorization headers are never logged. */
  logger?: Logger;
  /** Served at the root before the composition proxy (e.g. the REST mirror). Default: none. */
  extraRoutes?: Router;
  /** Largest request body forwarded, bytes; larger ones get 413. Default 16 MiB. */
  maxBodyBytes?: number;
  /** How long the composition's Smelter may take to answer (status and headers), ms; then 504. Default 30 000. */
  requestTimeoutMs?: number;
  /** How long connecting to the composition's Smelter may take, ms; then 504. Default 5 000. */
  connectTimeoutMs?: number;
  /** Pause before the store's change feed is re-opened after it failed, ms. Default 1 000. */
  watchRetryMs?: number;
  /**
   * Serve HTTPS with this certificate (and, with `ca`, ask callers for client certificates signed by it, without
   * requiring one: composition callers use their token; the REST mirror's auth decides on the certificate).
   * `onChange` re-reads it for new connections (rotation without restart). Default: plain HTTP.
   */
  tls?: GatewayTls;
}

export interface GatewayTls {
  current(): Readonly<{ cert: Buffer; key: Buffer; ca: Buffer | undefined }>;
  /** Subscribes to certificate changes; returns the unsubscribe function. */
  onChange?(listener: () => void): () => void;
}

export interface Gateway {
  /** `http://host:port` (loopback when bound to every interface), the base of every composition's `gateway_url`. */
  url: string;
  port: number;
  /** Stops listening, closes proxied WebSockets (1001) and open connections. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 16 << 20;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

const BEARER_CHALLENGE = 'Bearer realm="smelter-fleet"';

type Authorization = { ok: true; upstream: Upstream; serverName: string } | { ok: false; error: GatewayErrorBody };

/**
 * Whether `authorization` grants access to the composition now: its token, a live allocation, a server still
 * holding it. Reads the store every time (no cache: a release must stop routing at once).
 */
export async function authorize(
  store: Store,
  authorization: string | undefined,
  compositionId: string,
): Promise<Authorization> {
  const bearer = bearerToken(authorization);
  if (!bearer.ok)
    return {
      ok: false,
      error: {
        status: 401,
        code: 'UNAUTHENTICATED',
        message:
          bearer.reason === 'missing'
            ? "Authorization header missing: send 'Authorization: Bearer <token>' with the composition's token"
            : "Authorization header malformed: expected 'Bearer <token>'",
        headers: {
          'www-authenticate':
            bearer.reason === 'missing' ? BEARER_CHALLENGE : `${BEARER_CHALLENGE}, error="invalid_request"`,
        },
      },
    };
  const denied: Authorization = {
    ok: false,
    error: {
      status: 403,
      code: 'PERMISSION_DENIED',
      // One answer for a wrong token and an unknown or released composition: nothing to probe.
      message: `the token does not grant access to composition "${compositionId}" (wrong token, or no live allocation)`,
    },
  };
  try {
    const allocation = await store.getAllocation(compositionId);
    if (!allocation || !tokenMatches(bearer.token, allocation.token)) return denied;
    const server = await store.getServer(allocation.serverName);
    if (!server || !holdsComposition(server.state) || server.compositionId !== compositionId)
      return {
        ok: false,
        error: {
          status: 403,
          code: 'PERMISSION_DENIED',
          message: `composition "${compositionId}" is no longer served: its server "${allocation.serverName}" is ${server ? server.state : 'gone'}`,
        },
      };
    return {
      ok: true,
      upstream: { host: server.apiHost ?? server.address, port: server.ports.api },
      serverName: server.name,
    };
  } catch (err) {
    return {
      ok: false,
      error: {
        status: 503,
        code: 'UNAVAILABLE',
        message: `fleet state unavailable: ${isFleetError(err) ? err.message : String(err)}`,
      },
    };
  }
}

/**
 * The control-plane front door: `/v1/compositions/{composition_id}/smelter/<path>` goes to `/<path>` of that
 * composition's Smelter (HTTP and the `/ws` WebSocket) for callers with its token; `extraRoutes` serve the rest.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const store = options.store;
  const logger = options.logger ?? silentLogger;
  const host = options.host ?? '127.0.0.1';
  const forwardOptions = {
    agent: new Agent({ keepAlive: true, maxFreeSockets: 16 }),
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    logger,
  };
  const watchRetryMs = options.watchRetryMs ?? 1000;

  const app = express();
  app.disable('x-powered-by');
  if (options.extraRoutes) app.use(options.extraRoutes);
  app.use((req, res) => {
    sendError(res, { status: 404, code: 'NOT_FOUND', message: `no route for ${req.method} ${req.path}` });
  });

  const pairs = new Set<WsPair>();
  const wss = clientWebSocketServer();

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = parseProxyPath(req.url ?? '/');
    if (target.kind === 'none') return void app(req, res);
    if (target.kind === 'invalid')
      return sendError(res, { status: 400, code: 'INVALID_ARGUMENT', message: target.message, field: target.field });
    const auth = await authorize(store, req.headers.authorization, target.compositionId);
    if (!auth.ok) {
      logger.info('refused', { composition: target.compositionId, status: auth.error.status, why: auth.error.code });
      return sendError(res, auth.error);
    }
    forward(req, res, auth.upstream, target.upstreamPath, forwardOptions);
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const target = parseProxyPath(req.url ?? '/');
    if (target.kind === 'none')
      return rejectUpgrade(socket, { status: 404, code: 'NOT_FOUND', message: 'no WebSocket at this path' });
    if (target.kind === 'invalid')
      return rejectUpgrade(socket, {
        status: 400,
        code: 'INVALID_ARGUMENT',
        message: target.message,
        field: target.field,
      });
    const auth = await authorize(store, req.headers.authorization, target.compositionId);
    if (!auth.ok) {
      logger.info('refused', { composition: target.compositionId, status: auth.error.status, why: auth.error.code });
      return rejectUpgrade(socket, auth.error);
    }
    const ids = { compositionId: target.compositionId, serverName: auth.serverName };
    const pair = await proxyWebSocket(wss, req, socket, head, auth.upstream, target.upstreamPath, ids, {
      connectTimeoutMs: forwardOptions.connectTimeoutMs,
      logger,
    });
    if (!pair) return;
    pairs.add(pair);
    socket.once('close', () => pairs.delete(pair));
    // A release between the check and now would have been missed by the watch below: check again.
    const again = await authorize(store, req.headers.authorization, target.compositionId);
    if (!again.ok) pair.close(1008, 'composition released');
  }

  // Released compositions and servers that stopped holding one lose their open WebSockets.
  const watchAbort = new AbortController();
  const closeWhere = (match: (p: WsPair) => boolean, reason: string) => {
    for (const p of pairs)
      if (match(p)) {
        pairs.delete(p);
        logger.info('websocket closed', { composition: p.compositionId, reason });
        p.close(1008, reason);
      }
  };
  const watching = (async () => {
    while (!watchAbort.signal.aborted) {
      try {
        for await (const event of store.watch(watchAbort.signal)) {
          if (event.type === 'allocation' && event.released)
            closeWhere(
              (p) => p.compositionId === event.allocation.compositionId && p.serverName === event.allocation.serverName,
              'composition released',
            );
          else if (event.type === 'server' && (event.removed || !holdsComposition(event.server.state)))
            closeWhere((p) => p.serverName === event.server.name, `server ${event.server.state}`);
        }
      } catch (err) {
        if (watchAbort.signal.aborted) break;
        logger.warn('store watch failed; retrying', { error: err instanceof Error ? err.message : String(err) });
      }
      if (watchAbort.signal.aborted) break;
      // The feed ended or failed: drop what may have been missed, then watch again.
      for (const p of [...pairs]) {
        // An unreadable store is no proof of a release: keep the socket until the store says so.
        const live = await store.getAllocation(p.compositionId).then(
          (a) => a !== undefined && a.serverName === p.serverName,
          () => true,
        );
        if (!live) closeWhere((q) => q === p, 'composition released');
      }
      await new Promise((r) => setTimeout(r, watchRetryMs).unref());
    }
  })();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    onRequest(req, res).catch((err: unknown) => {
      logger.error('gateway request failed', { error: err instanceof Error ? err.message : String(err) });
      sendError(res, { status: 500, code: 'INTERNAL', message: 'internal gateway error' });
    });
  };
  const tls = options.tls;
  const tlsOptions = () => {
    const { cert, key, ca } = tls!.current();
    return { cert, key, ...(ca && { ca, requestCert: true, rejectUnauthorized: false }) };
  };
  const server = tls ? createHttpsServer(tlsOptions(), handle) : createServer(handle);
  const stopTlsWatch = tls?.onChange?.(() => {
    if ('setSecureContext' in server) server.setSecureContext(tlsOptions());
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch((err: unknown) => {
      logger.error('gateway upgrade failed', { error: err instanceof Error ? err.message : String(err) });
      socket.destroy();
    });
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // Bound to every interface: name one that answers (loopback) rather than the unroutable wildcard.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `${tls ? 'https' : 'http'}://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
  logger.info('gateway listening', { url });

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        watchAbort.abort();
        stopTlsWatch?.();
        for (const p of pairs) p.close(1001, 'gateway shutting down');
        pairs.clear();
        const closed = new Promise<void>((r) => server.close(() => r()));
        for (const s of sockets) s.destroy();
        await closed;
        forwardOptions.agent.destroy();
        await watching;
      })();
      return closing;
    },
  };
}
