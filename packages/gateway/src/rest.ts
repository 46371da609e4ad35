import type { IncomingMessage } from 'node:http';
import { FleetError, silentLogger, type Logger } from '@smelter-fleet/core';
import {
  directCallContext,
  grpcStatusName,
  httpAuthRequest,
  type allocationService,
  type AuthRequest,
  type fleetService,
} from '@smelter-fleet/allocator';
import type { allocationV1, fleetV1 } from '@smelter-fleet/proto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { OPENAPI_DOCUMENT, type RestErrorCode } from './openapi.js';

type AllocationServiceImpl = ReturnType<typeof allocationService>;
type FleetServiceImpl = ReturnType<typeof fleetService>;

/** Caller authentication, e.g. the allocator's CallerAuth: `check` throws FleetError UNAUTHENTICATED/PERMISSION_DENIED. */
export interface RestCallerAuth {
  check(req: AuthRequest): unknown;
  /** Whether callers must send a bearer token (a 401 then says `WWW-Authenticate: Bearer`). */
  readonly requiresToken?: boolean;
}

export interface RestOptions {
  /**
   * The AllocationService implementation the gRPC server runs (`allocationService(...)`): REST calls it
   * directly, so validation, waits and region forwarding are the same.
   */
  allocation: AllocationServiceImpl;
  /** The FleetService implementation (`fleetService(...)`), for fleet status. */
  fleet: FleetServiceImpl;
  /** Checks every caller of `/v1/allocations` and `/v1/fleets`. Default: none (anyone). `/openapi.json` is public. */
  auth?: RestCallerAuth;
  /** Largest request body accepted, bytes. Default 1 MiB (above the largest valid AllocateRequest). */
  maxBodyBytes?: number;
  /** Default: silent. Bodies and tokens are never logged. */
  logger?: Logger;
}

const HTTP_STATUS: Record<RestErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 409,
  ABORTED: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  CANCELLED: 503,
  DEADLINE_EXCEEDED: 504,
};

/** gRPC field names that differ in REST (durations carry their unit). */
const REST_FIELD: Record<string, string> = { wait: 'wait_ms' };

class RestError extends Error {
  constructor(
    readonly code: RestErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** An empty key is named `""`, so that the field is never blank. */
const unknownField = (prefix: string, key: string) => invalid(`${prefix}${key === '' ? '""' : key}`, 'unknown field');
const invalid = (field: string, message: string) => new RestError('INVALID_ARGUMENT', `${field}: ${message}`, field);

interface ErrorBody {
  error: { code: RestErrorCode; message: string; field?: string };
}

/** The HTTP status and body of any error a route ends with; `internal` says it must be logged. */
export function restError(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  let code: RestErrorCode = 'INTERNAL';
  let message = 'internal error';
  let field: string | undefined;
  if (err instanceof RestError) {
    ({ code, message, field } = err);
  } else if (err instanceof FleetError) {
    code = err.code;
    message = err.message;
    field = err.field;
  } else if (isGrpcError(err)) {
    // ServerError thrown by a handler or middleware, or ClientError from a forwarded call.
    const name = grpcStatusName(err.code);
    if (name && name in HTTP_STATUS) {
      code = name as RestErrorCode;
      message = err.details || name;
      field = /^([A-Za-z_][\w.[\]-]*): /.exec(message)?.[1];
    }
  } else if (isBodyParserError(err)) {
    const why = err.type;
    if (err.status === 413) {
      code = 'PAYLOAD_TOO_LARGE';
      message = `body: larger than ${err.limit ?? 'the limit'} bytes`;
    } else if (err.status === 415) {
      code = 'UNSUPPORTED_MEDIA_TYPE';
      message = `body: ${err.message} (${why})`;
    } else if (err.status === 400) {
      code = 'INVALID_ARGUMENT';
      message = why === 'entity.parse.failed' ? `body: malformed JSON: ${err.message}` : `body: ${err.message}`;
    }
    if (code !== 'INTERNAL') field = 'body';
  } else if (err instanceof URIError || (isStatusError(err) && err.status === 400)) {
    // Express: a path parameter that does not percent-decode.
    code = 'INVALID_ARGUMENT';
    field = 'path';
    message = 'path: malformed percent-encoding';
  }
  // The service's field names, as REST spells them (RestErrors already name REST fields).
  const restField = field === undefined || err instanceof RestError ? undefined : REST_FIELD[field];
  if (field && restField) {
    if (message.startsWith(`${field}:`)) message = restField + message.slice(field.length);
    field = restField;
  }
  const body: ErrorBody = { error: { code, message, ...(field && { field }) } };
  return { status: HTTP_STATUS[code], body, internal: code === 'INTERNAL' };
}

function isGrpcError(err: unknown): err is { code: number; details: string } {
  if (!(err instanceof Error) || (err.name !== 'ServerError' && err.name !== 'ClientError')) return false;
  const e = err as Error & { code?: unknown; details?: unknown };
  return typeof e.code === 'number' && typeof e.details === 'string';
}

function isStatusError(err: unknown): err is Error & { status: number } {
  return err instanceof Error && typeof (err as { status?: unknown }).status === 'number';
}

function isBodyParserError(err: unknown): err is Error & { status: number; type: string; limit?: number } {
  return isStatusError(err) && typeof (err as { type?: unknown }).type === 'string';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringMap(field: string, value: unknown): Record<string, string> {
  if (!isObject(value)) throw invalid(field, 'must be an object of strings');
  for (const [k, v] of Object.entries(value))
    if (typeof v !== 'string') throw invalid(`${field}.${k}`, 'must be a string');
  // fromEntries: a "__proto__" key stays an own key, never a prototype.
  return Object.fromEntries(Object.entries(value as Record<string, string>));
}

function string(field: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  return value;
}

const FLEET_NAME = new RegExp(OPENAPI_DOCUMENT.paths['/v1/fleets/{name}'].get.parameters[0].schema.pattern);
const ALLOCATE_FIELDS = new Set(Object.keys(OPENAPI_DOCUMENT.components.schemas.AllocateRequest.properties));

/** The AllocateRequest a JSON body stands for: types and unknown fields checked here, values by the service. */
export function allocateRequestFromJson(body: unknown): allocationV1.AllocateRequest {
  if (body === undefined) throw invalid('body', 'is required (a JSON object)');
  if (!isObject(body)) throw invalid('body', 'must be a JSON object');
  for (const key of Object.keys(body)) if (!ALLOCATE_FIELDS.has(key)) throw unknownField('', key);
  const req: allocationV1.AllocateRequest = {
    fleet: '',
    matchLabels: {},
    compositionId: '',
    metadata: {},
    wait: undefined,
    preference: undefined,
  };
  if (body.fleet !== undefined) req.fleet = string('fleet', body.fleet);
  if (body.composition_id !== undefined) req.compositionId = string('composition_id', body.composition_id);
  if (body.match_labels !== undefined) req.matchLabels = stringMap('match_labels', body.match_labels);
  if (body.metadata !== undefined) req.metadata = stringMap('metadata', body.metadata);
  if (body.wait_ms !== undefined) {
    const ms = body.wait_ms;
    if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) throw invalid('wait_ms', 'must be an integer (ms)');
    req.wait = { seconds: Math.trunc(ms / 1000), nanos: (ms % 1000) * 1e6 };
  }
  if (body.preference !== undefined) req.preference = preferenceFromJson(body.preference);
  return req;
}

function preferenceFromJson(value: unknown): allocationV1.RegionPreference {
  if (!isObject(value)) throw invalid('preference', 'must be an object');
  const known = new Set(['regions', 'client_region']);
  for (const key of Object.keys(value)) if (!known.has(key)) throw unknownField('preference.', key);
  const out: allocationV1.RegionPreference = { regions: [], clientRegion: '' };
  if (value.regions !== undefined) {
    if (!Array.isArray(value.regions)) throw invalid('preference.regions', 'must be an array of strings');
    out.regions = value.regions.map((r: unknown, i) => string(`preference.regions[${i}]`, r));
  }
  if (value.client_region !== undefined) out.clientRegion = string('preference.client_region', value.client_region);
  return out;
}

/** What service implementations return (nice-grpc lets them leave fields out). */
type DeepPartial<T> = T extends Date ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;
type DeepPartialAllocation = DeepPartial<allocationV1.Allocation>;

/** An Allocation message as REST JSON (proto field names). */
export function allocationToJson(a: DeepPartialAllocation | undefined) {
  return {
    composition_id: a?.compositionId ?? '',
    server_name: a?.serverName ?? '',
    fleet: a?.fleet ?? '',
    region: a?.region ?? '',
    address: a?.address ?? '',
    ports: Object.fromEntries(Object.entries(a?.ports ?? {})),
    token: a?.token ?? '',
    allocated_at: (a?.allocatedAt ?? new Date(0)).toISOString(),
    metadata: Object.fromEntries(Object.entries(a?.metadata ?? {})),
    gateway_url: a?.gatewayUrl ?? '',
    media: {
      whip_url_template: a?.media?.whipUrlTemplate ?? '',
      whep_url_template: a?.media?.whepUrlTemplate ?? '',
      rtmp_url_template: a?.media?.rtmpUrlTemplate ?? '',
    },
  };
}

type DeepPartialFleet = DeepPartial<fleetV1.Fleet>;

/** A Fleet message as REST JSON. */
export function fleetToJson(f: DeepPartialFleet) {
  return {
    name: f.name ?? '',
    region: f.region ?? '',
    replicas: f.replicas ?? 0,
    scheduling: f.scheduling ?? '',
    servers_by_state: Object.fromEntries(Object.entries(f.serversByState ?? {})),
    smelter_command: f.smelterCommand ?? '',
    emulated: f.emulated ?? false,
    template_hash: f.templateHash ?? '',
    updated_servers: f.updatedServers ?? 0,
    outdated_servers: f.outdatedServers ?? 0,
    strategy: f.strategy ?? '',
    max_surge: f.maxSurge ?? '',
    max_unavailable: f.maxUnavailable ?? '',
    max_drain_time_ms: (f.maxDrainTime?.seconds ?? 0) * 1000 + Math.round((f.maxDrainTime?.nanos ?? 0) / 1e6),
  };
}

/** Refuses query parameters other than `allowed` (and repeated ones), naming the first. */
function checkQuery(req: Request, allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.query as Record<string, unknown>)) {
    if (!allowed.includes(key)) throw invalid(key, 'unknown query parameter');
    if (typeof value !== 'string') throw invalid(key, 'must be given once');
    out[key] = value;
  }
  return out;
}

/**
 * The REST mirror of AllocationService and fleet status (see openapi.ts, served at `/openapi.json`). Mount it at
 * the root; requests outside `/v1/allocations`, `/v1/fleets` and `/openapi.json` pass through to later routes.
 */
export function restRouter(options: RestOptions): Router {
  const logger = options.logger ?? silentLogger;
  const { allocation, fleet, auth } = options;
  // An empty body is a missing body (body-parser would make it `{}`).
  const empty = new WeakSet<IncomingMessage>();
  const parseJson = express.json({
    limit: options.maxBodyBytes ?? 1024 * 1024,
    strict: true,
    type: () => true,
    verify: (req, _res, buf) => void (buf.length === 0 && empty.add(req)),
  });
  const router = express.Router({ caseSensitive: true, strict: false });

  const send = (req: Request, res: Response, err: unknown) => {
    if (res.headersSent || res.destroyed) return;
    const { status, body, internal } = restError(err);
    if (internal) logger.error('REST internal error', { method: req.method, path: req.path, error: String(err) });
    if (status === 401 && auth?.requiresToken) res.setHeader('WWW-Authenticate', 'Bearer');
    res.status(status).json(body);
  };

  /** Runs a route: the AbortSignal ends the call when the client goes away. */
  const route =
    (fn: (req: Request, signal: AbortSignal) => Promise<unknown>) =>
    async (req: Request, res: Response): Promise<void> => {
      const controller = new AbortController();
      const onClose = () => {
        if (!res.writableFinished) controller.abort();
      };
      res.on('close', onClose);
      try {
        const body = await fn(req, controller.signal);
        if (!res.destroyed) res.status(200).json(body);
      } catch (err) {
        if (!controller.signal.aborted) send(req, res, err);
      } finally {
        res.off('close', onClose);
      }
    };

  const ctx = (req: Request, signal: AbortSignal) => directCallContext(signal, req.socket.remoteAddress ?? 'rest');

  router.get('/openapi.json', (_req, res) => {
    res.json(OPENAPI_DOCUMENT);
  });

  const guarded = express.Router({ caseSensitive: true, strict: false });
  guarded.use((req, res, next) => {
    if (!auth) return next();
    try {
      auth.check(httpAuthRequest(req));
    } catch (err) {
      logger.warn('REST caller refused', { method: req.method, path: req.path, reason: (err as Error).message });
      return send(req, res, err instanceof FleetError ? withField(err, 'authorization') : err);
    }
    next();
  });

  const json = (req: Request, res: Response, next: NextFunction) => {
    const type = req.headers['content-type'];
    if (!type || !req.is('application/json'))
      return send(
        req,
        res,
        new RestError(
          'UNSUPPORTED_MEDIA_TYPE',
          `content-type: must be application/json${type ? `, not ${JSON.stringify(type.slice(0, 64))}` : ''}`,
          'content-type',
        ),
      );
    const charset = /;\s*charset=("?)([^";]*)\1/i.exec(type)?.[2]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')
      return send(
        req,
        res,
        new RestError(
          'UNSUPPORTED_MEDIA_TYPE',
          `content-type: JSON must be UTF-8, not ${JSON.stringify(charset.slice(0, 32))}`,
          'content-type',
        ),
      );
    parseJson(req, res, (err?: unknown) => {
      if (err === undefined && empty.has(req)) req.body = undefined;
      next(err);
    });
  };

  guarded
    .route('/v1/allocations')
    .post(
      json,
      route(async (req, signal) => {
        checkQuery(req, []);
        const request = allocateRequestFromJson(req.body);
        const res = await allocation.allocate(request, ctx(req, signal)).catch(notFound('fleet'));
        return { allocation: allocationToJson(res.allocation) };
      }),
    )
    .get(
      route(async (req, signal) => {
        const { fleet: fleetName = '' } = checkQuery(req, ['fleet']);
        const res = await allocation.listAllocations({ fleet: fleetName }, ctx(req, signal));
        return { allocations: (res.allocations ?? []).map(allocationToJson) };
      }),
    );

  guarded
    .route('/v1/allocations/:composition_id')
    .get(
      route(async (req, signal) => {
        checkQuery(req, []);
        const compositionId = String(req.params.composition_id);
        const res = await allocation
          .getAllocation({ compositionId }, ctx(req, signal))
          .catch(notFound('composition_id'));
        return { allocation: allocationToJson(res.allocation) };
      }),
    )
    .delete(
      route(async (req, signal) => {
        checkQuery(req, []);
        const compositionId = String(req.params.composition_id);
        const res = await allocation.release({ compositionId }, ctx(req, signal)).catch(notFound('composition_id'));
        return { allocation: allocationToJson(res.allocation) };
      }),
    );

  guarded.route('/v1/fleets').get(
    route(async (req, signal) => {
      checkQuery(req, []);
      const res = await fleet.listFleets({}, ctx(req, signal));
      return { fleets: (res.fleets ?? []).map((f) => fleetToJson(f)) };
    }),
  );

  guarded.route('/v1/fleets/:name').get(
    route(async (req, signal) => {
      checkQuery(req, []);
      const name = String(req.params.name);
      if (!FLEET_NAME.test(name))
        throw invalid('name', 'must be a lowercase DNS label (a-z, 0-9, -, at most 63 characters)');
      const res = await fleet.listFleets({}, ctx(req, signal));
      const found = (res.fleets ?? []).find((f) => f.name === name);
      if (!found) throw new RestError('NOT_FOUND', `fleet "${name}" not found`, 'name');
      return { fleet: fleetToJson(found) };
    }),
  );

  // A known path with another method: 405 naming the allowed ones; OPTIONS answers them.
  const methods: [string, string][] = [
    ['/v1/allocations', 'GET, HEAD, POST'],
    ['/v1/allocations/:composition_id', 'DELETE, GET, HEAD'],
    ['/v1/fleets', 'GET, HEAD'],
    ['/v1/fleets/:name', 'GET, HEAD'],
  ];
  for (const [path, allow] of methods)
    guarded.all(path, (req, res) => {
      res.setHeader('Allow', allow);
      if (req.method === 'OPTIONS') return void res.status(204).end();
      send(req, res, new RestError('METHOD_NOT_ALLOWED', `method: ${req.method} not allowed (${allow})`, 'method'));
    });
  // Anything else under our prefixes is ours to refuse.
  guarded.all(['/v1/allocations/*rest', '/v1/fleets/*rest'], (req, res) => {
    send(
      req,
      res,
      new RestError('NOT_FOUND', `path: no such resource ${JSON.stringify(req.path.slice(0, 200))}`, 'path'),
    );
  });
  guarded.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    send(req, res, err);
  });

  // Only our prefixes meet the auth check; every other path goes on to later routes (the gateway's).
  router.use((req, res, next) => {
    if (/^\/v1\/(allocations|fleets)(\/|$)/.test(req.path)) return guarded(req, res, next);
    next();
  });
  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    send(req, res, err);
  });
  return router;
}

function withField(err: FleetError, field: string): FleetError | RestError {
  return new RestError(err.code, err.message, err.field ?? field);
}

/** A NOT_FOUND (the store's, or a peer region's) names what was not found: the request field it came from. */
function notFound(field: string) {
  return (err: unknown): never => {
    const { body } = restError(err);
    if (body.error.code === 'NOT_FOUND' && !body.error.field)
      throw new RestError('NOT_FOUND', body.error.message, field);
    throw err;
  };
}

/**
 * A router to hand to the gateway before the services exist (`up` starts the allocator after the gateway, whose
 * URL the allocations carry); `serve(options)` plugs the REST mirror in. Until then its paths answer 503.
 */
export function pendingRestRouter(): { router: Router; serve(options: RestOptions): void } {
  let inner: Router | undefined;
  const router = express.Router();
  router.use((req, res, next) => {
    if (inner) return inner(req, res, next);
    if (!/^\/v1\/(allocations|fleets)(\/|$)/.test(req.path)) return next();
    res.status(503).json({ error: { code: 'UNAVAILABLE', message: 'the allocator is starting; retry' } });
  });
  return {
    router,
    serve(options) {
      inner = restRouter(options);
    },
  };
}
