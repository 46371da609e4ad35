import { request, type Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '@smelter-fleet/core';
import { forwardableHeaders } from './proxy-path.js';

/** An error the gateway answers itself, as `{error: {code, message}}`. */
export interface GatewayErrorBody {
  status: number;
  code: string;
  message: string;
  field?: string;
  headers?: Record<string, string>;
}

export function errorJson(e: GatewayErrorBody): string {
  return JSON.stringify({ error: { code: e.code, message: e.message, ...(e.field && { field: e.field }) } });
}

export function sendError(res: ServerResponse, e: GatewayErrorBody, closeConnection = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorJson(e);
  res.writeHead(e.status, {
    ...e.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(closeConnection && { connection: 'close' }),
  });
  res.end(body);
}

/** Where a composition's Smelter API answers. */
export interface Upstream {
  host: string;
  port: number;
}

export interface ForwardOptions {
  agent: Agent;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  logger: Logger;
}

class UpstreamTimeout extends Error {
  constructor(readonly phase: 'connect' | 'response') {
    super(`upstream ${phase} timeout`);
  }
}

const tooLarge = (max: number): GatewayErrorBody => ({
  status: 413,
  code: 'RESOURCE_EXHAUSTED',
  message: `request body is larger than the gateway's limit of ${max} bytes`,
});

/**
 * Forwards one request to `upstream` and its answer back, streaming both bodies. `Authorization` and hop-by-hop
 * headers are not forwarded. Answers 413 (body over the limit), 502 (upstream unreachable) or 504 (no answer in
 * time) itself.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: Upstream,
  path: string,
  options: ForwardOptions,
): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > options.maxBodyBytes) {
    // The body is not read: close the connection after answering.
    sendError(res, tooLarge(options.maxBodyBytes), true);
    res.once('finish', () => req.destroy());
    return;
  }
  const headers = forwardableHeaders(req.headers, ['authorization', 'host']);
  headers.host = `${upstream.host}:${upstream.port}`;
  const peer = req.socket.remoteAddress;
  if (peer) {
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${String(prior)}, ${peer}` : peer;
  }
  if (req.headers.host) headers['x-forwarded-host'] = req.headers.host;

  // No body (the usual GET): nothing to stream; and a GET that met a keep-alive socket the upstream had just
  // closed is sent again.
  const bodyless = declared === 0 && req.headers['transfer-encoding'] === undefined;
  const idempotent = bodyless && (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS');
  let done = false;
  let upstreamReq = send(false);
  const fail = (e: GatewayErrorBody) => {
    if (done) return;
    done = true;
    clearTimeout(responseTimer);
    upstreamReq.destroy();
    sendError(res, e, true);
    res.once('finish', () => req.destroy());
  };
  const responseTimer = setTimeout(
    () => upstreamReq.destroy(new UpstreamTimeout('response')),
    options.requestTimeoutMs,
  );

  function send(retry: boolean) {
    const r = request({
      host: upstream.host,
      port: upstream.port,
      method: req.method,
      path,
      headers,
      agent: options.agent,
    });
    r.on('socket', (socket) => {
      if (!socket.connecting) return;
      const connectTimer = setTimeout(() => r.destroy(new UpstreamTimeout('connect')), options.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(connectTimer));
      socket.once('close', () => clearTimeout(connectTimer));
    });
    r.on('error', (err: Error & { code?: string }) => {
      if (done || r !== upstreamReq) return;
      if (res.headersSent) {
        done = true;
        res.destroy(err);
        return;
      }
      if (idempotent && !retry && r.reusedSocket && err.code === 'ECONNRESET') {
        upstreamReq = send(true);
        return;
      }
      if (err instanceof UpstreamTimeout) {
        options.logger.warn('upstream timeout', { phase: err.phase, upstream: `${upstream.host}:${upstream.port}` });
        fail({
          status: 504,
          code: 'DEADLINE_EXCEEDED',
          message:
            err.phase === 'connect'
              ? `the composition's Smelter did not accept a connection within ${options.connectTimeoutMs} ms`
              : `the composition's Smelter did not answer within ${options.requestTimeoutMs} ms`,
        });
        return;
      }
      options.logger.warn('upstream error', { error: err.message, upstream: `${upstream.host}:${upstream.port}` });
      fail({
        status: 502,
        code: 'UNAVAILABLE',
        message: `the composition's Smelter is unreachable (${err.code ?? err.message})`,
      });
    });
    r.on('response', (upstreamRes) => {
      clearTimeout(responseTimer);
      if (done) {
        upstreamRes.resume();
        return;
      }
      res.writeHead(upstreamRes.statusCode ?? 502, forwardableHeaders(upstreamRes.headers));
      upstreamRes.pipe(res);
      upstreamRes.once('end', () => (done = true));
      upstreamRes.once('aborted', () => res.destroy());
      upstreamRes.once('error', () => res.destroy());
    });
    if (bodyless) r.end();
    return r;
  }

  // The client went away before its answer was complete: stop the upstream call too.
  res.once('close', () => {
    clearTimeout(responseTimer);
    if (!res.writableFinished) upstreamReq.destroy();
  });

  if (bodyless) {
    req.resume();
    return;
  }
  // Request body, streamed with backpressure, counted against the limit.
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > options.maxBodyBytes) {
      req.pause();
      fail(tooLarge(options.maxBodyBytes));
      return;
    }
    if (!upstreamReq.write(chunk)) req.pause();
  });
  upstreamReq.on('drain', () => req.resume());
  req.once('end', () => {
    if (!done) upstreamReq.end();
  });
  req.once('aborted', () => upstreamReq.destroy());
}
