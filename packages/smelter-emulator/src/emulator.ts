import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTcpServer } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { describeErrors, sample, spec, validator, variants, type Schema } from './spec.js';

export interface EmulatorOptions {
  /** HTTP API port; 0 = ephemeral. Default 8081 (SMELTER_API_PORT). */
  apiPort?: number;
  /** WHIP/WHEP server port; 0 = ephemeral. Default 9000. */
  whipWhepPort?: number;
  /** RTMP server port (a TCP listener only); 0 = ephemeral. Default 1935. */
  rtmpPort?: number;
  /** Interface to bind. Default '127.0.0.1' (real Smelter binds 0.0.0.0; the API must never be exposed). */
  host?: string;
  /** Default `smelter_emulator_<random>`. */
  instanceId?: string;
  /** Default 30. */
  outputFramerate?: number;
  /** Delay before the API port is bound, ms (real Smelter binds it after init). Default 0. */
  startDelayMs?: number;
  /** Knob: crash this many ms after start. */
  crashAfterMs?: number;
  /** Knob: stop answering (connections still accepted) this many ms after start. */
  hangAfterMs?: number;
  /** Structured log sink. Default: JSON lines on stdout. */
  log?: (entry: Record<string, unknown>) => void;
  /** What a crash does. Default: destroy every socket and listener (main.ts exits with 101 instead). */
  onCrash?: () => void;
  /** Test hook: told of every HTTP API request (upgrades too) as it arrives, before its body is read. */
  onRequest?: (request: { method: string; url: string; headers: IncomingMessage['headers'] }) => void;
  /** Test hook: told when a `/ws` client connects, sends a text/binary frame (as text), or goes away. */
  onWs?: (event: { type: 'open' | 'message' | 'close'; data?: string }) => void;
}

export interface EmulatorHandle {
  apiPort: number;
  whipWhepPort: number;
  rtmpPort: number;
  /** http://host:apiPort */
  url: string;
  instanceId: string;
  crash(): void;
  hang(): void;
  close(): Promise<void>;
}

type Kind = 'input' | 'output' | 'image' | 'shader' | 'web-renderer';
interface Entity {
  type: string;
  body: Record<string, unknown>;
  ended?: boolean;
  bearerToken?: string;
}

/** Outputs that send OUTPUT_DONE when they end; a WHEP server output never does (FACTS.md). */
const DONE_OUTPUTS = new Set(['rtp_stream', 'rtmp_client', 'mp4', 'hls', 'moq_client', 'whip_client']);
/** Register `type` -> stats report `type` (StatsReport in the spec). */
const INPUT_STATS: Record<string, string> = {
  rtp_stream: 'rtp',
  whip_server: 'whip',
  whep_client: 'whep',
  hls: 'hls',
  rtmp_server: 'rtmp',
  moq_server: 'moq_server',
  moq_client: 'moq_client',
  mp4: 'mp4',
};
const OUTPUT_STATS: Record<string, string> = {
  whep_server: 'whep',
  whip_client: 'whip',
  hls: 'hls',
  mp4: 'mp4',
  rtmp_client: 'rtmp',
  rtp_stream: 'rtp',
  moq_client: 'moq_client',
};
const MAX_BODY = 10 << 20;

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

// Spec paths as matchers: `/api/input/{input_id}/register` -> regexp and its operations.
const ROUTES = Object.entries(spec.paths).map(([path, ops]) => ({
  path,
  pattern: new RegExp(`^${path.replace(/\{[^}]+\}/g, '([^/]+)')}$`),
  ops,
}));

function listen(server: Server | ReturnType<typeof createTcpServer>, port: number, host: string): Promise<number> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolveListen((server.address() as AddressInfo).port);
    });
  });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(400, 'MALFORMED_REQUEST', 'request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolveBody(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Starts an emulated Smelter 0.6 server: its HTTP API, `/ws` events, WHIP/WHEP and RTMP ports. */
export async function startEmulator(options: EmulatorOptions = {}, signal?: AbortSignal): Promise<EmulatorHandle> {
  const host = options.host ?? '127.0.0.1';
  const instanceId = options.instanceId ?? `smelter_emulator_${randomBytes(4).toString('hex')}`;
  const log = options.log ?? ((entry) => process.stdout.write(JSON.stringify(entry) + '\n'));
  log({ level: 'info', msg: 'Smelter EMULATOR starting (a test stand-in, not Smelter)', instance_id: instanceId });

  const entities: Record<Kind, Map<string, Entity>> = {
    input: new Map(),
    output: new Map(),
    image: new Map(),
    shader: new Map(),
    'web-renderer': new Map(),
  };
  let startedAt: number | undefined;
  let pipelineDown = false;
  let failNextReset = false;
  let hung = false;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  const wss = new WebSocketServer({ noServer: true });
  let wsAccepted = 0;
  wss.on('connection', (ws: WebSocket) => {
    wsAccepted++;
    if (!options.onWs) return;
    const hook = options.onWs;
    hook({ type: 'open' });
    // Smelter ignores what clients send; the hook only lets tests see it arrive.
    ws.on('message', (data: Buffer) => hook({ type: 'message', data: data.toString() }));
    ws.once('close', () => hook({ type: 'close' }));
  });

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const emit = (event: Record<string, string>) => {
    const frame = JSON.stringify(event);
    for (const client of wss.clients) if (client.readyState === client.OPEN) client.send(frame);
  };
  const inputEvents = (id: string, input: Entity) => {
    const media =
      input.type === 'rtp_stream' || input.type === 'whip_server' ? Object.keys(input.body) : ['video', 'audio'];
    for (const kind of ['video', 'audio'] as const)
      if (media.includes(kind)) {
        const prefix = kind === 'video' ? 'VIDEO' : 'AUDIO';
        emit({ type: `${prefix}_INPUT_DELIVERED`, input_id: id });
        emit({ type: `${prefix}_INPUT_PLAYING`, input_id: id });
      }
  };
  /** An output ends: OUTPUT_DONE where Smelter sends it; stays listed until unregistered. */
  const endOutput = (id: string, output: Entity) => {
    if (output.ended) return;
    output.ended = true;
    if (DONE_OUTPUTS.has(output.type)) emit({ type: 'OUTPUT_DONE', output_id: id });
  };

  const configuration = (apiPort: number, whipWhepPort: number) => ({
    api_port: apiPort,
    output_framerate: options.outputFramerate ?? 30,
    mixing_sample_rate: 48000,
    ahead_of_time_processing: false,
    never_drop_output_frames: false,
    run_late_scheduled_events: false,
    download_root: '/tmp',
    web_renderer_enable: false,
    web_renderer_enable_gpu: false,
    whip_whep_server_port: whipWhepPort,
    whip_whep_enable: true,
    webrtc_stun_servers: ['stun:stun.l.google.com:19302'],
    rendering_mode: 'gpu_optimized',
  });

  let ports = { api: 0, whipWhep: 0 };

  async function handleApi(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname.startsWith('/_emulator/')) return knob(url.pathname, req, res);
    const route = ROUTES.find((r) => r.pattern.test(url.pathname));
    if (!route) return send(res, 404, undefined);
    const method = (req.method ?? 'GET').toLowerCase();
    const op = route.ops[method];
    if (!op) return send(res, 405, undefined);
    const params = route.pattern.exec(url.pathname)!.slice(1).map(decodeURIComponent);
    const raw = await readBody(req);
    if (pipelineDown && route.path !== '/status')
      throw new ApiError(500, 'PIPELINE_DOWN', 'Pipeline is down after a failed reset');

    const media = op.requestBody?.content;
    let body: Record<string, unknown> = {};
    if (media?.['multipart/form-data']) {
      if (!String(req.headers['content-type'] ?? '').startsWith('multipart/form-data'))
        throw new ApiError(400, 'MALFORMED_REQUEST', 'Invalid `boundary` for `multipart/form-data` request');
      if (!raw.includes('name="file"')) throw new ApiError(400, 'MALFORMED_REQUEST', 'Missing field `file`');
    } else if (media?.['application/json']) {
      body = parseJson(req, raw, media['application/json'].schema);
    }
    return send(res, 200, route_(route.path, method, params, body));
  }

  function parseJson(req: IncomingMessage, raw: Buffer, schema: Schema): Record<string, unknown> {
    const prefix = 'Failed to deserialize the JSON body into the target type';
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json'))
      throw new ApiError(400, 'MALFORMED_REQUEST', 'Expected request with `Content-Type: application/json`');
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      throw new ApiError(
        400,
        'MALFORMED_REQUEST',
        `Failed to parse the request body as JSON: ${(err as Error).message}`,
      );
    }
    const tagged = variants(schema);
    if (tagged.size > 0 && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const type = (value as Record<string, unknown>).type;
      if (type === undefined) throw new ApiError(400, 'MALFORMED_REQUEST', `${prefix}: missing field \`type\``);
      if (typeof type !== 'string' || !tagged.has(type))
        throw new ApiError(
          400,
          'MALFORMED_REQUEST',
          `${prefix}: unknown variant \`${String(type)}\`, expected one of ${[...tagged.keys()].map((t) => `\`${t}\``).join(', ')}`,
        );
    }
    const validate = validator(schema);
    if (!validate(value)) {
      // With the tag known, name the error within that variant, as serde would.
      const type = (value as Record<string, unknown> | null)?.type;
      const variant = typeof type === 'string' ? tagged.get(type) : undefined;
      let errors = validate.errors;
      if (variant) {
        const one = validatorFor(variant);
        one(value);
        errors = one.errors ?? errors;
      }
      throw new ApiError(400, 'MALFORMED_REQUEST', `${prefix}: ${describeErrors(errors)}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw new ApiError(400, 'MALFORMED_REQUEST', `${prefix}: expected a JSON object`);
    return value as Record<string, unknown>;
  }

  function route_(path: string, method: string, params: string[], body: Record<string, unknown>): unknown {
    const [id = ''] = params;
    switch (`${method} ${path}`) {
      case 'get /status':
        return {
          instance_id: instanceId,
          configuration: configuration(ports.api, ports.whipWhep),
          inputs: [...entities.input].map(([input_id, e]) => ({ input_id, input_type: e.type })),
          outputs: [...entities.output].map(([output_id, e]) => ({ output_id, output_type: e.type })),
        };
      case 'get /stats':
        return {
          inputs: statsOf(entities.input, INPUT_STATS, 'InputStatsReport'),
          outputs: statsOf(entities.output, OUTPUT_STATS, 'OutputStatsReport'),
        };
      case 'post /api/start':
        if (startedAt === undefined) {
          startedAt = Date.now();
          for (const [inputId, input] of entities.input) inputEvents(inputId, input);
        }
        return {};
      case 'post /api/reset':
        if (failNextReset) {
          failNextReset = false;
          pipelineDown = true;
          throw new ApiError(500, 'PIPELINE_DOWN', 'Failed to reset the pipeline');
        }
        for (const map of Object.values(entities)) map.clear();
        for (const t of timers) clearTimeout(t);
        timers.clear();
        startedAt = undefined;
        return {};
      case 'post /api/font/register':
        return {};
      case 'post /api/input/{input_id}/register':
        return registerInput(id, body);
      case 'post /api/output/{output_id}/register':
        return register('output', id, body, 'OUTPUT_STREAM_ALREADY_REGISTERED');
      case 'post /api/image/{image_id}/register':
        return register('image', id, body, 'ENTITY_ALREADY_REGISTERED');
      case 'post /api/shader/{shader_id}/register':
        return register('shader', id, body, 'ENTITY_ALREADY_REGISTERED');
      case 'post /api/web-renderer/{instance_id}/register':
        return register('web-renderer', id, body, 'ENTITY_ALREADY_REGISTERED');
      case 'post /api/input/{input_id}/unregister':
        return unregister('input', id, body, 404, 'INPUT_STREAM_NOT_FOUND');
      case 'post /api/output/{output_id}/unregister':
        return unregister('output', id, body, 404, 'OUTPUT_STREAM_NOT_FOUND');
      case 'post /api/image/{image_id}/unregister':
        return unregister('image', id, body, 404, 'ENTITY_NOT_FOUND');
      case 'post /api/shader/{shader_id}/unregister':
        return unregister('shader', id, body, 404, 'ENTITY_NOT_FOUND');
      case 'post /api/web-renderer/{instance_id}/unregister':
        return unregister('web-renderer', id, body, 404, 'ENTITY_NOT_FOUND');
      case 'post /api/input/{input_id}/update':
        existing('input', id, 404, 'INPUT_STREAM_NOT_FOUND');
        return {};
      case 'post /api/output/{output_id}/update':
      case 'post /api/output/{output_id}/request_keyframe':
        existing('output', id, 400, 'OUTPUT_STREAM_NOT_FOUND');
        return {};
      case 'get /ws':
        throw new ApiError(400, 'MALFORMED_REQUEST', 'Connection header did not include `upgrade`');
      default:
        throw new ApiError(500, 'INTERNAL', `emulator has no handler for ${method} ${path}`);
    }
  }

  function existing(kind: Kind, id: string, status: number, code: string): Entity {
    const e = entities[kind].get(id);
    if (!e) throw new ApiError(status, code, `${kind} "${id}" is not registered`);
    return e;
  }

  function register(kind: Kind, id: string, body: Record<string, unknown>, code: string): Record<string, unknown> {
    if (entities[kind].has(id)) throw new ApiError(409, code, `${kind} "${id}" is already registered`);
    const entity: Entity = { type: typeof body.type === 'string' ? body.type : kind, body };
    entities[kind].set(id, entity);
    if (kind === 'output' && entity.type === 'rtp_stream' && body.transport_protocol === 'tcp_server')
      return { port: typeof body.port === 'number' ? body.port : 20_000 + entities.output.size };
    return {};
  }

  function registerInput(id: string, body: Record<string, unknown>): Record<string, unknown> {
    register('input', id, body, 'INPUT_STREAM_ALREADY_REGISTERED');
    const input = entities.input.get(id)!;
    if (startedAt !== undefined) inputEvents(id, input);
    switch (input.type) {
      case 'rtp_stream':
        // Smelter binds the given port, or the first free one of a "start:end" range.
        return { port: typeof body.port === 'number' ? body.port : Number(String(body.port).split(':')[0]) };
      case 'whip_server':
        input.bearerToken = typeof body.bearer_token === 'string' ? body.bearer_token : randomBytes(16).toString('hex');
        return { bearer_token: input.bearerToken, endpoint_route: `/whip/${id}` };
      case 'mp4':
        return { video_duration_ms: 10_000, audio_duration_ms: 10_000 };
      default:
        return {};
    }
  }

  function unregister(
    kind: Kind,
    id: string,
    body: Record<string, unknown>,
    status: number,
    code: string,
  ): Record<string, unknown> {
    const entity = existing(kind, id, status, code);
    const apply = () => {
      if (kind === 'output') endOutput(id, entity);
      entities[kind].delete(id);
    };
    const at = typeof body.schedule_time_ms === 'number' ? body.schedule_time_ms : undefined;
    const delay = at !== undefined && startedAt !== undefined ? startedAt + at - Date.now() : 0;
    if (delay > 0) later(delay, apply);
    else apply();
    return {};
  }

  function statsOf(
    map: Map<string, Entity>,
    types: Record<string, string>,
    schemaName: string,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const schema = { $ref: `#/components/schemas/${schemaName}` };
    for (const [id, e] of map) {
      const tag = types[e.type];
      if (!tag) continue;
      const variant = variants(schema).get(tag);
      if (variant) out[id] = sample(variant);
    }
    return out;
  }

  async function knob(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const m = /^\/_emulator\/output\/([^/]+)\/(end|error)$/.exec(path);
    if (path === '/_emulator/crash') {
      send(res, 200, {});
      res.once('finish', () => handle.crash());
      return;
    }
    if (path === '/_emulator/hang') {
      send(res, 200, {});
      hung = true;
      return;
    }
    if (path === '/_emulator/ws/drop') {
      for (const c of wss.clients) c.terminate();
      return send(res, 200, {});
    }
    if (path === '/_emulator/ws') return send(res, 200, { open: wss.clients.size, accepted: wsAccepted });
    if (path === '/_emulator/fail-next-reset') {
      failNextReset = true;
      return send(res, 200, {});
    }
    if (m) {
      const id = decodeURIComponent(m[1]!);
      const output = existing('output', id, 404, 'OUTPUT_STREAM_NOT_FOUND');
      if (m[2] === 'end') endOutput(id, output);
      else {
        const severity = String((JSON.parse(raw.toString() || '{}') as { severity?: string }).severity ?? 'critical');
        if (severity === 'critical') output.ended = true;
        emit({ type: 'OUTPUT_ERROR', output_id: id, severity, err: 'emulated output error', stack: '' });
      }
      return send(res, 200, {});
    }
    send(res, 404, undefined);
  }

  const seen = (req: IncomingMessage) =>
    options.onRequest?.({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
  const api = createServer((req, res) => {
    seen(req);
    if (hung) return; // accepted, never answered
    handleApi(req, res).catch((err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(500, 'INTERNAL', String(err));
      send(res, e.status, { error_code: e.code, message: e.message, stack: [e.message], http_status_code: e.status });
    });
  });
  api.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  api.on('upgrade', (req, socket, head) => {
    seen(req);
    if (hung) return;
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => wss.emit('connection', ws, req));
  });

  const whipWhep = createServer((req, res) => {
    if (hung) return;
    void whipWhepRoute(req, res);
  });
  async function whipWhepRoute(req: IncomingMessage, res: ServerResponse) {
    await readBody(req).catch(() => Buffer.alloc(0));
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/status') return send(res, 200, {});
    const m = /^\/(whip|whep)\/([^/]+)(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return send(res, 404, undefined);
    const [, proto, rawId, session] = m;
    const id = decodeURIComponent(rawId!);
    const entity = proto === 'whip' ? entities.input.get(id) : entities.output.get(id);
    const wanted = proto === 'whip' ? 'whip_server' : 'whep_server';
    if (!entity || entity.type !== wanted)
      return send(res, 404, { error_code: 'NOT_FOUND', message: `no ${wanted} "${id}"` });
    const token = proto === 'whip' ? entity.bearerToken : (entity.body.bearer_token as string | undefined);
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) return send(res, 401, undefined);
    if (session) return send(res, 204, undefined);
    if (req.method !== 'POST') return send(res, 405, undefined);
    // No real WebRTC: a minimal SDP answer so clients see the right shape.
    const sessionId = randomBytes(8).toString('hex');
    res.writeHead(201, { 'content-type': 'application/sdp', location: `/${proto}/${rawId}/${sessionId}` });
    res.end('v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=smelter-emulator\r\nt=0 0\r\n');
  }
  const rtmp = createTcpServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  for (const srv of [whipWhep])
    srv.on('connection', (s: Socket) => (sockets.add(s), s.once('close', () => sockets.delete(s))));

  if (options.startDelayMs) await new Promise((r) => setTimeout(r, options.startDelayMs));
  signal?.throwIfAborted();
  const whipWhepPort = await listen(whipWhep, options.whipWhepPort ?? 9000, host);
  const rtmpPort = await listen(rtmp, options.rtmpPort ?? 1935, host);
  const apiPort = await listen(api, options.apiPort ?? 8081, host);
  ports = { api: apiPort, whipWhep: whipWhepPort };
  log({
    level: 'info',
    msg: 'listening',
    instance_id: instanceId,
    api_port: apiPort,
    whip_whep_port: whipWhepPort,
    rtmp_port: rtmpPort,
  });

  let closed = false;
  const handle: EmulatorHandle = {
    apiPort,
    whipWhepPort,
    rtmpPort,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${apiPort}`,
    instanceId,
    crash() {
      log({ level: 'error', msg: "thread 'main' panicked: emulated crash" });
      if (options.onCrash) return options.onCrash();
      for (const s of sockets) s.destroy();
      for (const c of wss.clients) c.terminate();
      void handle.close();
    },
    hang() {
      hung = true;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await Promise.all([api, whipWhep, rtmp].map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    },
  };
  if (options.crashAfterMs !== undefined) later(options.crashAfterMs, () => handle.crash());
  if (options.hangAfterMs !== undefined) later(options.hangAfterMs, () => handle.hang());
  return handle;
}

const variantValidators = new Map<Schema, ReturnType<typeof validator>>();
function validatorFor(variant: Schema) {
  let v = variantValidators.get(variant);
  if (!v) {
    v = validatorOfInline(variant);
    variantValidators.set(variant, v);
  }
  return v;
}

function validatorOfInline(variant: Schema) {
  return validator(variant);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  if (body === undefined) {
    res.writeHead(status, { 'content-length': 0 });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
  res.end(text);
}
