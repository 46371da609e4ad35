import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { errorMiddleware } from '@smelter-fleet/allocator';
import { FleetError, isFleetError, invalidArgument, type FleetErrorCode, type Logger } from '@smelter-fleet/core';
import { sdkV1 } from '@smelter-fleet/proto';
import { createServer, ServerError, Status, type ServerMiddleware, type ServiceImplementation } from 'nice-grpc';
import type { Sidecar } from './sidecar.js';

export interface SdkServerOptions {
  sidecar: Sidecar;
  /** gRPC port on the loopback interface; 0 picks one. Default 9357 (as Agones). */
  grpcPort?: number;
  /** HTTP/JSON port on the loopback interface; 0 picks one. Default 9358. */
  httpPort?: number;
  /** Loopback address to bind. Anything else is refused: the SDK is for code beside Smelter only. Default 127.0.0.1. */
  host?: string;
  /** Extra HTTP routes (local development mode). */
  extraRoutes?: Record<string, (body: Record<string, unknown>) => Promise<unknown>>;
  logger: Logger;
}

export interface SdkServer {
  grpcPort: number;
  httpPort: number;
  host: string;
  close(): Promise<void>;
}

/** Largest HTTP SDK call read, bytes (an annotation value may be 64 KiB). */
const MAX_BODY = 256 * 1024;
/** Largest gRPC SDK message (gRPC's default): below it, a too-large value is INVALID_ARGUMENT by our own checks. */
const MAX_GRPC_MESSAGE = 4 * 1024 * 1024;
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

const UNDECODABLE = Symbol('undecodable');
type TsProtoMethod = {
  name: string;
  requestType: {
    decode(b: Uint8Array): unknown;
    encode(m: unknown): { finish(): Uint8Array };
    fromPartial(m: unknown): unknown;
  };
  responseType: {
    decode(b: Uint8Array): unknown;
    encode(m: unknown): { finish(): Uint8Array };
    fromPartial(m: unknown): unknown;
  };
  requestStream: boolean;
  responseStream: boolean;
  options: object;
};

/**
 * The SDK definition with a decoder that never throws: grpc-js answers an undecodable request with
 * INTERNAL; garbage from a caller is INVALID_ARGUMENT (see `rejectUndecodable`).
 */
function tolerantDefinition(def: typeof sdkV1.SDKDefinition): typeof sdkV1.SDKDefinition {
  const methods = Object.entries(def.methods as unknown as Record<string, TsProtoMethod>).map(([key, m]) => [
    key,
    {
      path: `/${def.fullName}/${m.name}`,
      requestStream: m.requestStream,
      responseStream: m.responseStream,
      requestDeserialize: (bytes: Uint8Array) => {
        try {
          return m.requestType.decode(bytes);
        } catch (err) {
          return { [UNDECODABLE]: `${m.name} request is not a valid protobuf message: ${(err as Error).message}` };
        }
      },
      requestSerialize: (v: unknown) => m.requestType.encode(m.requestType.fromPartial(v)).finish(),
      responseDeserialize: (bytes: Uint8Array) => m.responseType.decode(bytes),
      responseSerialize: (v: unknown) => m.responseType.encode(m.responseType.fromPartial(v)).finish(),
      options: m.options,
    },
  ]);
  return Object.fromEntries(methods) as unknown as typeof sdkV1.SDKDefinition;
}

const rejectUndecodable: ServerMiddleware = async function* (call, context) {
  const bad = (call.request as { [UNDECODABLE]?: string } | undefined)?.[UNDECODABLE];
  if (bad) throw new ServerError(Status.INVALID_ARGUMENT, bad);
  return yield* call.next(call.request, context);
};

function sdkService(sidecar: Sidecar): ServiceImplementation<typeof sdkV1.SDKDefinition> {
  return {
    async ready() {
      sidecar.ready();
      return {};
    },
    async health(requests) {
      for await (const _ of requests) sidecar.healthPing();
      return {};
    },
    async shutdown(req) {
      sidecar.shutdown(req.reason);
      return {};
    },
    async setLabel(req) {
      sidecar.setLabel(req.key, req.value);
      return {};
    },
    async setAnnotation(req) {
      sidecar.setAnnotation(req.key, req.value);
      return {};
    },
    async getServer() {
      return { server: sidecar.server() };
    },
    async *watchServer(_req, { signal }) {
      for await (const server of sidecar.watchServer(signal)) yield { server };
    },
    async finishComposition(req) {
      sidecar.finishComposition(req.reason);
      return {};
    },
  };
}

const HTTP_STATUS: Partial<Record<FleetErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  FAILED_PRECONDITION: 409,
  ALREADY_EXISTS: 409,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
};

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(invalidArgument('body', `larger than ${MAX_BODY} bytes`), { httpStatus: 413 }));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        const body: unknown = JSON.parse(text);
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          return reject(invalidArgument('body', 'must be a JSON object'));
        resolve(body as Record<string, unknown>);
      } catch (err) {
        reject(invalidArgument('body', `is not JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

function str(body: Record<string, unknown>, field: string, required = false): string {
  const v = body[field];
  if (v === undefined && !required) return '';
  if (typeof v !== 'string') throw invalidArgument(field, required ? 'is required (a string)' : 'must be a string');
  return v;
}

/** The SDK over HTTP/JSON (for images without gRPC): same calls, same errors. */
function httpRoutes(sidecar: Sidecar): Record<string, (body: Record<string, unknown>) => Promise<unknown>> {
  return {
    'POST /ready': async () => (sidecar.ready(), {}),
    'POST /health': async () => (sidecar.healthPing(), {}),
    'POST /shutdown': async (b) => (sidecar.shutdown(str(b, 'reason')), {}),
    'PUT /metadata/label': async (b) => (sidecar.setLabel(str(b, 'key', true), str(b, 'value', true)), {}),
    'PUT /metadata/annotation': async (b) => (sidecar.setAnnotation(str(b, 'key', true), str(b, 'value', true)), {}),
    'GET /server': async () => ({ server: sdkV1.Server.toJSON(sidecar.server()) }),
    'POST /composition/finish': async (b) => (sidecar.finishComposition(str(b, 'reason')), {}),
  };
}

/** Serves the SDK on the loopback interface only: gRPC `smelterfleet.sdk.v1.SDK` and HTTP/JSON. */
export async function startSdkServer(options: SdkServerOptions): Promise<SdkServer> {
  const { sidecar, logger } = options;
  const host = options.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host))
    throw new FleetError(
      'INVALID_ARGUMENT',
      `the SDK listens on loopback only (127.0.0.1, ::1, localhost), not "${host}"`,
      {
        field: 'sdk host',
      },
    );
  const grpc = createServer({ 'grpc.max_receive_message_length': MAX_GRPC_MESSAGE })
    .use(errorMiddleware(logger))
    .use(rejectUndecodable);
  grpc.add(tolerantDefinition(sdkV1.SDKDefinition), sdkService(sidecar));
  const grpcPort = await grpc.listen(`${host.includes(':') ? `[${host}]` : host}:${options.grpcPort ?? 9357}`);

  const routes = { ...httpRoutes(sidecar), ...options.extraRoutes };
  const http: HttpServer = createHttpServer((req, res) => void handle(req, res));
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://sdk').pathname;
    if (req.method === 'GET' && path === '/watch/server') {
      const ac = new AbortController();
      res.on('close', () => ac.abort());
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for await (const server of sidecar.watchServer(ac.signal))
        res.write(JSON.stringify({ server: sdkV1.Server.toJSON(server) }) + '\n');
      res.end();
      return;
    }
    const route = routes[`${req.method} ${path}`];
    try {
      if (!route) {
        const known = Object.keys(routes).some((r) => r.endsWith(` ${path}`));
        return send(res, known ? 405 : 404, {
          error: { code: known ? 'METHOD_NOT_ALLOWED' : 'NOT_FOUND', message: `no route ${req.method} ${path}` },
        });
      }
      send(res, 200, await route(await readJson(req)));
    } catch (err) {
      if (!isFleetError(err)) {
        logger.error('SDK call failed', { path, error: String(err) });
        return send(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
      }
      const status = (err as { httpStatus?: number }).httpStatus ?? HTTP_STATUS[err.code] ?? 500;
      send(res, status, { error: { code: err.code, message: err.message, ...(err.field && { field: err.field }) } });
    }
  }
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.httpPort ?? 9358, host, () => resolve());
  });
  const address = http.address();
  const httpPort = typeof address === 'object' && address ? address.port : 0;
  return {
    grpcPort,
    httpPort,
    host,
    async close() {
      grpc.forceShutdown();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
