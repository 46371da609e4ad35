import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@smelter-fleet/core';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { errorJson, type GatewayErrorBody, type Upstream } from './proxy.js';
import { forwardableHeaders } from './proxy-path.js';

/** Answers an upgrade request with a plain HTTP error and closes the socket. */
export function rejectUpgrade(socket: Duplex, e: GatewayErrorBody): void {
  const body = errorJson(e);
  const head = [
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}`,
    ...Object.entries(e.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
  socket.end(head.join('\r\n') + '\r\n\r\n' + body);
}

const chosenProtocol = new WeakMap<IncomingMessage, string>();

/** The server side of proxied WebSockets: agrees to the subprotocol the upstream chose, nothing else. */
export function clientWebSocketServer(): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (_offered, req) => chosenProtocol.get(req) || false,
  });
}

/** One proxied WebSocket: the client's and the composition Smelter's. */
export interface WsPair {
  compositionId: string;
  serverName: string;
  /** Closes both sides (the client with `code`). */
  close(code: number, reason: string): void;
}

export interface ProxyWsOptions {
  connectTimeoutMs: number;
  logger: Logger;
}

// Codes that cannot be sent in a close frame; relayed as a plain close.
const RESERVED = new Set([1004, 1005, 1006, 1015]);
const sendable = (code: number) => (code >= 1000 && code < 5000 && !RESERVED.has(code) ? code : 1000);

/**
 * Connects to the composition's Smelter `/ws` first; only once it accepted does the client get its 101, so a
 * refused upstream handshake reaches the client as the upstream's own HTTP answer. Frames are relayed both ways;
 * closing either side closes the other. Resolves with the pair once open (undefined if it never opened).
 */
export function proxyWebSocket(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  upstream: Upstream,
  path: string,
  ids: { compositionId: string; serverName: string },
  options: ProxyWsOptions,
): Promise<WsPair | undefined> {
  const headers = forwardableHeaders(req.headers, [
    'authorization',
    'host',
    'sec-websocket-key',
    'sec-websocket-version',
    'sec-websocket-extensions',
    'sec-websocket-protocol',
  ]);
  const protocols = String(req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  const target = `ws://${upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host}:${upstream.port}${path}`;
  return new Promise((resolve) => {
    let settled = false;
    const upstreamWs = new WebSocket(target, protocols, {
      headers: headers as Record<string, string>,
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs,
    });
    const giveUp = (e: GatewayErrorBody) => {
      if (settled) return;
      settled = true;
      upstreamWs.terminate();
      rejectUpgrade(socket, e);
      resolve(undefined);
    };
    // The client left while the upstream handshake was running.
    const onClientGone = () => {
      if (settled) return;
      settled = true;
      upstreamWs.terminate();
      resolve(undefined);
    };
    socket.once('close', onClientGone);
    upstreamWs.once('unexpected-response', (_r, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        if (settled) return;
        settled = true;
        const body = Buffer.concat(chunks);
        const head = [`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`];
        for (const [k, v] of Object.entries(forwardableHeaders(res.headers, ['content-length'])))
          for (const one of Array.isArray(v) ? v : [v]) head.push(`${k}: ${one}`);
        head.push(`content-length: ${body.length}`, 'connection: close');
        socket.end(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), body]));
        upstreamWs.terminate();
        resolve(undefined);
      });
    });
    upstreamWs.on('error', (err: Error & { code?: string }) => {
      if (settled) return;
      const timedOut = /timed out/i.test(err.message);
      options.logger.warn('upstream websocket error', { error: err.message, composition: ids.compositionId });
      giveUp(
        timedOut
          ? { status: 504, code: 'DEADLINE_EXCEEDED', message: "the composition's Smelter did not accept /ws in time" }
          : {
              status: 502,
              code: 'UNAVAILABLE',
              message: `the composition's Smelter is unreachable (${err.code ?? err.message})`,
            },
      );
    });
    upstreamWs.once('open', () => {
      if (settled) {
        upstreamWs.terminate();
        return;
      }
      settled = true;
      socket.off('close', onClientGone);
      if (upstreamWs.protocol) chosenProtocol.set(req, upstreamWs.protocol);
      wss.handleUpgrade(req, socket, head, (client) => {
        relay(client, upstreamWs);
        resolve({
          ...ids,
          close(code, reason) {
            client.close(code, reason);
            upstreamWs.close(1000, reason);
          },
        });
      });
    });
  });
}

function relay(client: WebSocket, upstream: WebSocket): void {
  const pass = (to: WebSocket) => (data: RawData, isBinary: boolean) => {
    if (to.readyState === WebSocket.OPEN) to.send(data, { binary: isBinary });
  };
  client.on('message', pass(upstream));
  upstream.on('message', pass(client));
  const closeOther = (other: WebSocket) => (code: number, reason: Buffer) => {
    if (other.readyState === WebSocket.CLOSED) return;
    // An abnormal end (no close frame) is mirrored as one.
    if (code === 1006) other.terminate();
    else if (other.readyState === WebSocket.CONNECTING) other.terminate();
    else other.close(sendable(code), reason);
  };
  client.once('close', closeOther(upstream));
  upstream.once('close', closeOther(client));
  client.on('error', () => client.terminate());
  upstream.on('error', () => upstream.terminate());
}
