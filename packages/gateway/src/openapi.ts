/**
 * OpenAPI 3.1 description of the REST mirror (rest.ts), served at `/openapi.json`. Every REST test validates
 * its requests and responses against it, so it cannot drift from the implementation: the schemas state the
 * exact rules the server enforces (core's validation), not looser ones.
 */

const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'ABORTED',
  'RESOURCE_EXHAUSTED',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNAVAILABLE',
  'DEADLINE_EXCEEDED',
  'CANCELLED',
  'INTERNAL',
] as const;

export type RestErrorCode = (typeof ERROR_CODES)[number];

/** core's COMPOSITION_ID, LABEL_KEY, LABEL_VALUE and DNS-label rules, as JSON Schema patterns. */
const COMPOSITION_ID = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';
const NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const LABEL_KEY = '^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
/** core's REGION_NAME. */
const REGION = '^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$';
const LABEL_VALUE = '^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object) => ({ 'application/json': { schema } });
const errorResponse = (description: string) => ({ description, content: json(ref('Error')) });

const ERRORS = {
  '400': errorResponse('Bad input: `error.field` names the offending field (body field, path/query parameter).'),
  '401': errorResponse('Caller not authenticated (no or unknown bearer token / client certificate).'),
  '403': errorResponse('Caller authenticated but not allowed.'),
  '500': errorResponse('Internal error (logged by the server).'),
  '503': errorResponse('Store or peer region unavailable; retry.'),
  '504': errorResponse('A peer region did not answer in time.'),
};

const COMPOSITION_ID_PARAM = {
  name: 'composition_id',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: COMPOSITION_ID },
};

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'smelter-fleet REST API',
    version: '1.0.0',
    description:
      'REST mirror of smelterfleet.allocation.v1.AllocationService and fleet status (FleetService.ListFleets). ' +
      'Same semantics and errors as gRPC: the gRPC status maps to the HTTP status, and `error.code` is its name. ' +
      'JSON field names are the proto field names (snake_case); durations are integers of milliseconds (`_ms`).',
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'A token from the allocator token file.' },
      mtls: { type: 'mutualTLS', description: 'A client certificate signed by an allowed client CA.' },
    },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        additionalProperties: false,
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            additionalProperties: false,
            properties: {
              code: { type: 'string', enum: [...ERROR_CODES] },
              message: { type: 'string', minLength: 1 },
              field: {
                type: 'string',
                minLength: 1,
                description: 'Dotted path of the offending field, e.g. `composition_id` or `metadata.owner`.',
              },
            },
          },
        },
      },
      AllocateRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['composition_id'],
        // fleet, or match_labels, or both.
        anyOf: [
          { required: ['fleet'], properties: { fleet: { minLength: 1 } } },
          { required: ['match_labels'], properties: { match_labels: { minProperties: 1 } } },
        ],
        properties: {
          fleet: {
            type: 'string',
            description: 'Fleet to allocate from. Optional when match_labels is set.',
            anyOf: [{ const: '' }, { pattern: NAME }],
          },
          match_labels: {
            type: 'object',
            description: 'Only servers carrying every one of these labels are candidates.',
            propertyNames: { pattern: LABEL_KEY },
            additionalProperties: { type: 'string', pattern: LABEL_VALUE },
          },
          composition_id: {
            type: 'string',
            pattern: COMPOSITION_ID,
            description: 'The composition id and idempotency key: retrying returns the same allocation.',
          },
          metadata: {
            type: 'object',
            description: 'Free-form metadata recorded with the allocation and passed to the server.',
            maxProperties: 64,
            propertyNames: { minLength: 1, maxLength: 128 },
            additionalProperties: { type: 'string', maxLength: 4096 },
          },
          preference: {
            type: 'object',
            additionalProperties: false,
            description:
              "Where to allocate. Left out: this allocator's region first, then its peer regions nearest first. " +
              'The allocation says which region served it.',
            properties: {
              regions: {
                type: 'array',
                description:
                  'Regions to try, in order, and the only ones. 400 when no allocator is known for any of them.',
                maxItems: 16,
                uniqueItems: true,
                items: { type: 'string', pattern: REGION },
              },
              client_region: {
                type: 'string',
                description: "The caller's region: regions are tried nearest first by the operator's latency table.",
                anyOf: [{ const: '' }, { pattern: REGION }],
              },
            },
          },
          wait_ms: {
            type: 'integer',
            minimum: 0,
            maximum: 300000,
            description: 'How long to wait for a Ready server before 429, in ms. Default 0: fail at once.',
          },
        },
      },
      MediaEndpoints: {
        type: 'object',
        additionalProperties: false,
        required: ['whip_url_template', 'whep_url_template', 'rtmp_url_template'],
        description:
          "URL templates on the server's direct address (empty when it lacks that port); `{...}` are the caller's.",
        properties: {
          whip_url_template: { type: 'string', examples: ['http://10.0.0.7:9000/whip/{input_id}'] },
          whep_url_template: { type: 'string', examples: ['http://10.0.0.7:9000/whep/{output_id}'] },
          rtmp_url_template: { type: 'string', examples: ['rtmp://10.0.0.7:1935/{input_id}/{stream_key}'] },
        },
      },
      Allocation: {
        type: 'object',
        additionalProperties: false,
        required: [
          'composition_id',
          'server_name',
          'fleet',
          'region',
          'address',
          'ports',
          'token',
          'allocated_at',
          'metadata',
          'gateway_url',
          'media',
        ],
        properties: {
          composition_id: { type: 'string' },
          server_name: { type: 'string' },
          fleet: { type: 'string' },
          region: { type: 'string', description: 'Region of the server (the one that served the allocation).' },
          address: { type: 'string', description: 'Direct address of the server, for media.' },
          ports: {
            type: 'object',
            description: 'Named ports on that address: api, whip_whep, rtmp.',
            additionalProperties: { type: 'integer', minimum: 0, maximum: 65535 },
          },
          token: { type: 'string', description: "The composition's gateway token (Authorization: Bearer)." },
          allocated_at: { type: 'string', format: 'date-time' },
          metadata: { type: 'object', additionalProperties: { type: 'string' } },
          gateway_url: {
            type: 'string',
            description: "The composition's Smelter API on the gateway; empty when no gateway is configured.",
          },
          media: ref('MediaEndpoints'),
        },
      },
      AllocationResponse: {
        type: 'object',
        additionalProperties: false,
        required: ['allocation'],
        properties: { allocation: ref('Allocation') },
      },
      AllocationList: {
        type: 'object',
        additionalProperties: false,
        required: ['allocations'],
        properties: { allocations: { type: 'array', items: ref('Allocation') } },
      },
      Fleet: {
        type: 'object',
        additionalProperties: false,
        required: [
          'name',
          'region',
          'replicas',
          'scheduling',
          'servers_by_state',
          'smelter_command',
          'emulated',
          'template_hash',
          'updated_servers',
          'outdated_servers',
          'strategy',
          'max_surge',
          'max_unavailable',
          'max_drain_time_ms',
        ],
        properties: {
          name: { type: 'string' },
          region: { type: 'string' },
          replicas: { type: 'integer', minimum: 0, description: 'Desired number of servers.' },
          scheduling: { type: 'string', enum: ['Packed', 'Distributed'] },
          servers_by_state: {
            type: 'object',
            description: 'Server counts by state name (Ready, Allocated, ...).',
            propertyNames: {
              enum: ['Starting', 'Ready', 'Allocated', 'Draining', 'Shutdown', 'Unhealthy', 'Error'],
            },
            additionalProperties: { type: 'integer', minimum: 0 },
          },
          smelter_command: { type: 'string' },
          emulated: { type: 'boolean', description: 'Whether the servers run the Smelter emulator (a test stand-in).' },
          template_hash: { type: 'string' },
          updated_servers: { type: 'integer', minimum: 0 },
          outdated_servers: { type: 'integer', minimum: 0 },
          strategy: { type: 'string', enum: ['RollingUpdate', 'Recreate'] },
          max_surge: { type: 'string' },
          max_unavailable: { type: 'string' },
          max_drain_time_ms: { type: 'integer', minimum: 0 },
        },
      },
      FleetResponse: {
        type: 'object',
        additionalProperties: false,
        required: ['fleet'],
        properties: { fleet: ref('Fleet') },
      },
      FleetList: {
        type: 'object',
        additionalProperties: false,
        required: ['fleets'],
        properties: { fleets: { type: 'array', items: ref('Fleet') } },
      },
    },
  },
  security: [{ bearer: [] }, { mtls: [] }],
  paths: {
    '/v1/allocations': {
      post: {
        operationId: 'allocate',
        summary: 'Allocate a Ready server to a composition (AllocationService.Allocate). Idempotent.',
        requestBody: { required: true, content: json(ref('AllocateRequest')) },
        // Checks beyond the schema that depend on the installation, not on the request alone.
        'x-config-dependent-fields': ['preference.regions'],
        responses: {
          '200': { description: 'The allocation (the same one on a retry).', content: json(ref('AllocationResponse')) },
          ...ERRORS,
          '404': errorResponse('The fleet does not exist.'),
          '409': errorResponse('The allocation conflicts with the current state; retry.'),
          '413': errorResponse('Body too large.'),
          '415': errorResponse('Body not `application/json` (UTF-8).'),
          '429': errorResponse('No Ready server (at once, or when wait_ms ran out).'),
        },
      },
      get: {
        operationId: 'listAllocations',
        summary: 'Live allocations, optionally of one fleet (AllocationService.ListAllocations).',
        parameters: [{ name: 'fleet', in: 'query', required: false, schema: { type: 'string' } }],
        responses: {
          '200': { description: 'The allocations.', content: json(ref('AllocationList')) },
          ...ERRORS,
        },
      },
    },
    '/v1/allocations/{composition_id}': {
      get: {
        operationId: 'getAllocation',
        summary: "A composition's live allocation (AllocationService.GetAllocation).",
        parameters: [COMPOSITION_ID_PARAM],
        responses: {
          '200': { description: 'The allocation.', content: json(ref('AllocationResponse')) },
          ...ERRORS,
          '404': errorResponse('The composition has no allocation.'),
        },
      },
      delete: {
        operationId: 'release',
        summary: "Release a composition's server (AllocationService.Release).",
        parameters: [COMPOSITION_ID_PARAM],
        responses: {
          '200': { description: 'The allocation that was released.', content: json(ref('AllocationResponse')) },
          ...ERRORS,
          '404': errorResponse('The composition has no allocation.'),
          '409': errorResponse('The server changed meanwhile; retry.'),
        },
      },
    },
    '/v1/fleets': {
      get: {
        operationId: 'listFleets',
        summary: 'Every fleet with its status (FleetService.ListFleets).',
        responses: {
          '200': { description: 'The fleets.', content: json(ref('FleetList')) },
          ...ERRORS,
        },
      },
    },
    '/v1/fleets/{name}': {
      get: {
        operationId: 'getFleet',
        summary: "One fleet's status.",
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: NAME } }],
        responses: {
          '200': { description: 'The fleet.', content: json(ref('FleetResponse')) },
          ...ERRORS,
          '404': errorResponse('No such fleet.'),
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        summary: 'This document.',
        security: [],
        responses: { '200': { description: 'OpenAPI 3.1 document.', content: json({ type: 'object' }) } },
      },
    },
  },
} as const;
