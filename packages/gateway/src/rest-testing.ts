// Test utilities (not exported by the package): every REST test sends its requests through `RestTestClient`,
// which checks requests and responses against the OpenAPI document, so the document cannot drift.
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Router } from 'express';
import { OPENAPI_DOCUMENT } from './openapi.js';

// ajv-formats is CommonJS: its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => void;

type Doc = typeof OPENAPI_DOCUMENT;
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: object;
}
interface Operation {
  operationId: string;
  /** Fields a 400 may name for a request the schema accepts (checks against the installation's config). */
  'x-config-dependent-fields'?: readonly string[];
  parameters?: readonly Parameter[];
  requestBody?: { content: Record<string, { schema: object }> };
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}

export interface DocRequest {
  method: string;
  /** Path only, already percent-encoded as sent; the query goes in `query`. */
  path: string;
  query?: Record<string, string | string[]>;
  /** The raw body as sent, when there is one. */
  body?: string;
  contentType?: string;
}

export interface DocResponse {
  status: number;
  contentType: string | null;
  /** The raw body received. */
  text: string;
}

/** Checks requests and responses against the OpenAPI document with ajv (JSON Schema 2020-12, as OpenAPI 3.1). */
export class OpenApiChecker {
  private readonly ajv: Ajv2020;
  private readonly cache = new Map<object, ValidateFunction>();
  readonly errorSchema: ValidateFunction;

  constructor(readonly doc: Doc = OPENAPI_DOCUMENT) {
    this.ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.ajv);
    this.ajv.addSchema({ $id: 'openapi.json', components: doc.components });
    this.errorSchema = this.compile({ $ref: '#/components/schemas/Error' });
  }

  private compile(schema: object): ValidateFunction {
    let fn = this.cache.get(schema);
    if (!fn) {
      // Local refs resolve against the document's components.
      fn = this.ajv.compile({ $id: `s${this.cache.size}`, ...rebase(schema) });
      this.cache.set(schema, fn);
    }
    return fn;
  }

  /** The documented operation a method and path resolve to, with its path parameters (decoded). */
  operation(
    method: string,
    path: string,
  ): { template: string; operation: Operation; params: Record<string, string> } | { template: string } | undefined {
    for (const [template, item] of Object.entries(this.doc.paths)) {
      const names: string[] = [];
      const re = new RegExp(
        '^' +
          template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, name: string) => {
            names.push(name);
            return '([^/]+)';
          }) +
          '/?$',
      );
      const m = re.exec(path);
      if (!m) continue;
      let params: Record<string, string>;
      try {
        params = Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)]));
      } catch {
        return { template };
      }
      const m2 = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
      const operation = (item as Record<string, Operation | undefined>)[m2];
      return operation ? { template, operation, params } : { template };
    }
    return undefined;
  }

  /**
   * Whether the document accepts a request, with the reasons it does not. `undefined` when the document has no
   * such operation (an unknown path or method).
   */
  checkRequest(req: DocRequest): string[] | undefined {
    const found = this.operation(req.method, req.path);
    if (!found) return undefined;
    if (!('operation' in found)) return found.template ? undefined : ['path: bad percent-encoding'];
    const { operation, params } = found;
    const problems: string[] = [];
    const declared = operation.parameters ?? [];
    for (const p of declared) {
      const value = p.in === 'path' ? params[p.name] : req.query?.[p.name];
      if (value === undefined) {
        if (p.required) problems.push(`${p.name}: required`);
        continue;
      }
      if (Array.isArray(value)) {
        problems.push(`${p.name}: repeated`);
        continue;
      }
      const v = this.compile(p.schema);
      if (!v(value)) problems.push(`${p.name}: ${this.ajv.errorsText(v.errors)}`);
    }
    for (const key of Object.keys(req.query ?? {}))
      if (!declared.some((p) => p.in === 'query' && p.name === key)) problems.push(`${key}: undocumented query`);
    if (operation.requestBody) {
      const type = req.contentType?.split(';')[0]?.trim().toLowerCase();
      const media = type ? operation.requestBody.content[type] : undefined;
      // JSON is UTF-8 (RFC 8259): another charset is not the documented media type.
      const charset = /;\s*charset=("?)([^";]*)\1/i.exec(req.contentType ?? '')?.[2]?.toLowerCase();
      if (!media) problems.push(`content-type: ${type ?? 'none'} not documented`);
      else if (charset !== undefined && !['utf-8', 'utf8'].includes(charset))
        problems.push(`content-type: charset ${charset}`);
      else {
        let body: unknown;
        try {
          body = JSON.parse((req.body ?? '').replace(/^\uFEFF/, ''));
        } catch {
          problems.push('body: not JSON');
        }
        if (body !== undefined) {
          const v = this.compile(media.schema);
          if (!v(body)) problems.push(`body: ${this.ajv.errorsText(v.errors)}`);
        }
      }
    }
    return problems;
  }

  /** Reasons a response does not match the document (empty when it does). */
  checkResponse(req: DocRequest, res: DocResponse): string[] {
    const found = this.operation(req.method, req.path);
    const noBody = req.method.toUpperCase() === 'HEAD' || res.status === 204;
    if (!found || !('operation' in found)) {
      // Not a documented operation: must be a JSON error (404 path, 405 method, 400 encoding) or OPTIONS' 204.
      if (noBody) return [];
      if (![400, 401, 403, 404, 405].includes(res.status)) return [`undocumented operation answered ${res.status}`];
      return this.checkJson(this.errorSchema, res);
    }
    const response = found.operation.responses[String(res.status)];
    if (!response) return [`${found.operation.operationId}: status ${res.status} not documented`];
    if (noBody) return [];
    const media = response.content?.['application/json'];
    if (!media) return [`${found.operation.operationId}: ${res.status} has no documented body`];
    return this.checkJson(this.compile(media.schema), res);
  }

  private checkJson(v: ValidateFunction, res: DocResponse): string[] {
    if (!res.contentType?.startsWith('application/json')) return [`content-type ${res.contentType}, not JSON`];
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      return ['body is not JSON'];
    }
    return v(body) ? [] : [this.ajv.errorsText(v.errors)];
  }
}

/** Rewrites `#/components/...` refs to the document registered as `openapi.json`. */
function rebase(schema: object): object {
  return JSON.parse(
    JSON.stringify(schema, (key, value: unknown) =>
      key === '$ref' && typeof value === 'string' && value.startsWith('#/') ? `openapi.json${value}` : value,
    ),
  ) as object;
}

export interface RestCall {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON body (undefined when not JSON). */
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Whether the document accepts the request (undefined: not a documented operation). */
  requestValid: boolean | undefined;
  requestProblems: string[] | undefined;
}

/**
 * fetch against a REST base URL that fails (throws) when a response does not match the document, or when the
 * server's verdict on a request contradicts the document's: a schema error (400/413/415) for a request the
 * document accepts, or a success for one it refuses.
 */
export class RestTestClient {
  constructor(
    readonly baseUrl: string,
    readonly checker = new OpenApiChecker(),
    private readonly headers: Record<string, string> = {},
  ) {}

  /** `body` objects are sent as JSON; strings are sent as they are (with `contentType`, default JSON). */
  async call(
    method: string,
    pathAndQuery: string,
    options: { body?: unknown; contentType?: string | null; headers?: Record<string, string> } = {},
  ): Promise<RestCall> {
    const url = new URL(pathAndQuery, this.baseUrl);
    const raw =
      options.body === undefined
        ? undefined
        : typeof options.body === 'string'
          ? options.body
          : JSON.stringify(options.body);
    const contentType =
      options.contentType === null
        ? undefined
        : (options.contentType ?? (raw !== undefined ? 'application/json' : undefined));
    const query: Record<string, string | string[]> = {};
    for (const key of new Set(url.searchParams.keys())) {
      const all = url.searchParams.getAll(key);
      query[key] = all.length === 1 ? all[0]! : all;
    }
    const docReq: DocRequest = {
      method,
      path: url.pathname,
      query,
      ...(raw !== undefined && { body: raw }),
      ...(contentType !== undefined && { contentType }),
    };
    const res = await fetch(url, {
      method,
      headers: { ...this.headers, ...(contentType && { 'content-type': contentType }), ...options.headers },
      ...(raw !== undefined && { body: raw }),
    });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const problems = this.checker.checkResponse(docReq, {
      status: res.status,
      contentType: res.headers.get('content-type'),
      text,
    });
    const requestProblems = this.checker.checkRequest(docReq);
    const requestValid = requestProblems === undefined ? undefined : requestProblems.length === 0;
    const what = `${method} ${pathAndQuery} -> ${res.status} ${text.slice(0, 300)}`;
    if (problems.length > 0)
      throw new Error(`response does not match the OpenAPI document: ${problems.join('; ')}\n${what}`);
    const found = this.checker.operation(method, url.pathname);
    const configDependent = (found && 'operation' in found && found.operation['x-config-dependent-fields']) || [];
    const field = (body as { error?: { field?: string } } | undefined)?.error?.field;
    const semantic = res.status === 400 && field !== undefined && configDependent.includes(field);
    if (requestValid === true && [400, 413, 415].includes(res.status) && !semantic)
      throw new Error(`the server refused a request the document accepts\n${what}`);
    if (requestValid === false && res.status < 300)
      throw new Error(`the server accepted a request the document refuses: ${requestProblems!.join('; ')}\n${what}`);
    return { status: res.status, headers: res.headers, text, body, requestValid, requestProblems };
  }
}

/** Serves `router` on 127.0.0.1 port 0 (then anything `after` mounts, e.g. a fallback route). */
export async function serveRouter(
  router: Router,
  after?: (app: Express) => void,
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const app = express();
  app.use(router);
  after?.(app);
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
