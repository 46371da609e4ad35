// The CustomResourceDefinitions of SmelterFleet and SmelterFleetAutoscaler, built here and written to deploy/crds
// and the Helm chart by scripts/gen-crds.mjs (crds.test.ts fails when those copies drift).
// The schemas mirror core's parsers (fleet-spec.ts, autoscaler-spec.ts) so the API server rejects what they reject,
// naming the field: ranges and patterns in OpenAPI, bounds on durations and cross-field rules in CEL.
import { AUTOSCALER_KIND, FLEET_API_VERSION, FLEET_KIND } from '@smelter-fleet/core';
import { parseAllDocuments, stringify } from 'yaml';

const [group, version] = FLEET_API_VERSION.split('/') as [string, string];

/** API group of both custom resources (`smelterfleet.dev`). */
export const CRD_GROUP = group;
/** Served and stored version (`v1alpha1`). */
export const CRD_VERSION = version;
export const FLEET_PLURAL = 'smelterfleets';
export const AUTOSCALER_PLURAL = 'smelterfleetautoscalers';

export type JsonSchema = { [key: string]: unknown };
interface Rule {
  rule: string;
  message: string;
  /** JSONPath (from the schema the rule sits on) of the field the error names. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired';
}

const MAX_REPLICAS = 10_000;
const H = 3_600_000;

// Patterns: the parsers' regular expressions (spec-parse.ts, fleet-spec.ts), in RE2 syntax.
const DURATION = '^\\s*[0-9]+(\\.[0-9]+)?(ms|s|m|h)\\s*$';
const LABEL_KEY = '^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const ENV_KEY = '^[A-Za-z_][A-Za-z0-9_]*$';
const QUANTITY = '^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$';
const PERCENT_0_100 = '^([0-9]{1,2}|0[0-9]{2}|100)%$';
const PERCENT_1_99 = '^0*[1-9][0-9]?%$';
const NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const HTTP_URL = '^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+([/?#]\\S*)?$';
const CRON = '^\\s*[0-9*,/-]+(\\s+[0-9*,/-]+){4}\\s*$';

const cel = (s: string) => JSON.stringify(s).replace(/^"|"$/g, "'");

/** CEL: milliseconds (double) of a duration value `x` (an int of ms, or a string matching DURATION). */
function msOf(x: string): string {
  return (
    `(type(${x}) == int ? double(${x}) : double(${x}.trim().find('^[0-9]+(\\\\.[0-9]+)?')) * ` +
    `{'ms': 1.0, 's': 1000.0, 'm': 60000.0, 'h': 3600000.0}[${x}.trim().find('(ms|s|m|h)$')])`
  );
}

/** CEL: whether duration `x` is well-formed (bounds rules only evaluate well-formed values). */
const durationOk = (x: string) => `(type(${x}) == int ? ${x} >= 0 : ${x}.matches(${cel(DURATION)}))`;

/** CEL: a sibling duration field's ms, or its default when absent (or malformed: reported by its own rule). */
const msOrDefault = (field: string, defaultMs: number) =>
  `(has(self.${field}) && ${durationOk(`self.${field}`)} ? ${msOf(`self.${field}`)} : ${defaultMs}.0)`;

function showMs(ms: number): string {
  if (ms % H === 0) return `${ms / H}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A duration as the parser reads it: `500ms`, `30s`, `5m`, `4h`, or an integer of milliseconds. */
function duration(description: string, maxMs: number, minMs = 0): JsonSchema {
  const rules: Rule[] = [
    { rule: durationOk('self'), message: 'must be a duration like 500ms, 30s, 5m or 4h' },
    {
      rule: `!${durationOk('self')} || ${msOf('self')} <= ${maxMs}.0`,
      message: `must be at most ${maxMs / H}h`,
    },
  ];
  if (minMs > 0)
    rules.push({
      rule: `!${durationOk('self')} || ${msOf('self')} >= ${minMs}.0`,
      message: `must be at least ${showMs(minMs)}`,
    });
  return {
    description,
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    maxLength: 32,
    'x-kubernetes-validations': rules,
  };
}

const integer = (description: string, minimum: number, maximum: number, extra: JsonSchema = {}): JsonSchema => ({
  description,
  type: 'integer',
  format: 'int32',
  minimum,
  maximum,
  ...extra,
});

const oneOf = (description: string, values: string[]): JsonSchema => ({ description, type: 'string', enum: values });

const object = (description: string, properties: Record<string, JsonSchema>, extra: JsonSchema = {}): JsonSchema => ({
  ...(description && { description }),
  type: 'object',
  properties,
  ...extra,
});

/** A map of strings whose keys match `keyPattern`. */
function stringMap(description: string, keyPattern: string, what: string, value: JsonSchema): JsonSchema {
  return {
    description,
    type: 'object',
    maxProperties: 256,
    additionalProperties: value,
    'x-kubernetes-validations': [
      { rule: `self.all(k, k.size() <= 317 && k.matches(${cel(keyPattern)}))`, message: `every key must be ${what}` },
    ],
  };
}

/** An integer count, or a percentage string (the parser's int-or-percent). */
function intOrPercent(description: string, pattern: string, max: number, what: string): JsonSchema {
  return {
    description,
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    maxLength: 8,
    'x-kubernetes-validations': [
      { rule: `type(self) == int ? self >= 0 && self <= ${max} : self.matches(${cel(pattern)})`, message: what },
    ],
  };
}

const quantity: JsonSchema = {
  'x-kubernetes-int-or-string': true,
  anyOf: [{ type: 'integer' }, { type: 'string' }],
  maxLength: 64,
  'x-kubernetes-validations': [
    {
      rule: `type(self) == int ? self >= 0 : self.matches(${cel(QUANTITY)})`,
      message: 'must be a quantity like 2, 500m or 4Gi',
    },
  ],
};

const conditions: JsonSchema = {
  description: 'Latest observations of the object, one per type (metav1.Condition).',
  type: 'array',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
    properties: {
      type: { type: 'string', maxLength: 316 },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
      observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
      lastTransitionTime: { type: 'string', format: 'date-time' },
      reason: { type: 'string', maxLength: 1024 },
      message: { type: 'string', maxLength: 32768 },
    },
  },
};

const count = (description: string) => ({ description, type: 'integer', format: 'int32', minimum: 0 });

/** `template.spec.kubernetes`: how servers run as pods (fleet-spec.ts kubernetesFrom). */
function kubernetesTemplate(): JsonSchema {
  const hostPorts = "(has(self.portPolicy) ? self.portPolicy == 'Dynamic' : has(self.hostNetwork) && self.hostNetwork)";
  return object(
    'How servers run as pods.',
    {
      mode: oneOf(
        'Sidecar (the Smelter image + a smelter-fleet sidecar container, default) or Supervisor (one container, a custom image whose entrypoint is smelter-fleet supervise).',
        ['Sidecar', 'Supervisor'],
      ),
      addressType: oneOf(
        'Address allocations return: ExternalIP or InternalIP of the node (needs host ports), or PodIP. Default PodIP, or ExternalIP with host ports.',
        ['ExternalIP', 'InternalIP', 'PodIP'],
      ),
      portPolicy: oneOf(
        'None (container ports on the pod IP) or Dynamic (host ports from the controller’s range). Default None, Dynamic with hostNetwork.',
        ['None', 'Dynamic'],
      ),
      hostNetwork: { description: 'Run in the node’s network namespace. Default false.', type: 'boolean' },
      nodeSelector: stringMap('Node labels the pods must match.', LABEL_KEY, 'a label key (prefix/name)', {
        type: 'string',
      }),
    },
    {
      'x-kubernetes-validations': [
        {
          rule: "!(has(self.hostNetwork) && self.hostNetwork && has(self.portPolicy) && self.portPolicy == 'None')",
          message: 'must be Dynamic with hostNetwork (pods on one node need distinct ports)',
          fieldPath: '.portPolicy',
        },
        {
          rule: `!has(self.addressType) || self.addressType == 'PodIP' || ${hostPorts}`,
          message:
            'ExternalIP and InternalIP need portPolicy Dynamic or hostNetwork (container ports are reachable on the pod IP only)',
          fieldPath: '.addressType',
        },
      ] satisfies Rule[],
    },
  );
}

function fleetSpec(): JsonSchema {
  const zero = (x: string, fallback: string) =>
    `string(has(self.${x}) ? self.${x} : ${cel(fallback)}).matches('^0+%?$')`;
  return object(
    'A fleet of Smelter servers: the same document `smelter-fleet up -f` reads (packages/core/src/fleet-spec.ts).',
    {
      replicas: integer(
        'Servers kept: warm (Starting, Ready) + in use (Allocated, Draining with a composition).',
        0,
        MAX_REPLICAS,
        { default: 3 },
      ),
      region: { description: 'Region the servers are allocated as. Default local.', type: 'string', minLength: 1 },
      scheduling: oneOf('Packed (busiest node first) or Distributed. Default Packed.', ['Packed', 'Distributed']),
      template: object('The server template; any change is a rollout (see strategy).', {
        metadata: object('', {
          labels: stringMap(
            'Labels every server carries; allocation selectors match them.',
            LABEL_KEY,
            'a label key (prefix/name)',
            { type: 'string' },
          ),
        }),
        spec: object(
          '',
          {
            image: {
              description: 'Image of the Smelter container (Supervisor: the custom image). Default: the controller’s.',
              type: 'string',
              maxLength: 1024,
              pattern: '^[^\\s]+$',
            },
            command: {
              description: 'Smelter argv. Empty: the runtime default.',
              type: 'array',
              items: { type: 'string', minLength: 1 },
            },
            env: stringMap('Extra environment for Smelter.', ENV_KEY, 'an environment variable name', {
              type: 'string',
            }),
            resources: object('Pod resources of the Smelter container (quantities).', {
              requests: stringMap('', LABEL_KEY, 'a resource name', quantity),
              limits: stringMap('', LABEL_KEY, 'a resource name', quantity),
            }),
            kubernetes: kubernetesTemplate(),
          },
          {
            'x-kubernetes-validations': [
              {
                rule: "!(has(self.kubernetes) && has(self.kubernetes.mode) && self.kubernetes.mode == 'Supervisor') || has(self.image)",
                message:
                  'is required with mode Supervisor (a custom image whose entrypoint is smelter-fleet supervise)',
                fieldPath: '.image',
                reason: 'FieldValueRequired',
              },
            ] satisfies Rule[],
          },
        ),
      }),
      strategy: object(
        'How servers of an older template are replaced. Default RollingUpdate 25%/25%.',
        {
          type: oneOf('RollingUpdate (new servers first) or Recreate.', ['RollingUpdate', 'Recreate']),
          rollingUpdate: object(
            'Limits resolved against the warm pool (Starting + Ready).',
            {
              maxSurge: intOrPercent(
                'Extra warm servers during a rollout: a count or a percentage. Default 25%.',
                PERCENT_0_100,
                MAX_REPLICAS,
                'must be a count (0 or more) or a percentage from 0% to 100%',
              ),
              maxUnavailable: intOrPercent(
                'Warm servers that may be missing during a rollout: a count or a percentage. Default 25%.',
                PERCENT_0_100,
                MAX_REPLICAS,
                'must be a count (0 or more) or a percentage from 0% to 100%',
              ),
            },
            {
              'x-kubernetes-validations': [
                {
                  rule: `!(${zero('maxSurge', '25%')} && ${zero('maxUnavailable', '25%')})`,
                  message: 'may not be 0 when maxSurge is 0 too',
                  fieldPath: '.maxUnavailable',
                },
              ] satisfies Rule[],
            },
          ),
        },
        {
          'x-kubernetes-validations': [
            {
              rule: "!(has(self.type) && self.type == 'Recreate' && has(self.rollingUpdate))",
              message: 'only allowed with type RollingUpdate',
              fieldPath: '.rollingUpdate',
              reason: 'FieldValueForbidden',
            },
          ] satisfies Rule[],
        },
      ),
      drain: object('What happens to a released or outdated server.', {
        onRelease: oneOf('Recycle (POST /api/reset, back to Ready) or Replace. Default Recycle.', [
          'Recycle',
          'Replace',
        ]),
        flushTime: duration('Time left to outputs to flush after release. Default 1s.', H),
        maxDrainTime: duration('Longest a server may stay Draining. Default 4h.', 7 * 24 * H),
      }),
      health: object('Health checking of the servers.', {
        startupTimeout: duration('A server not healthy this long after launch is Unhealthy. Default 60s.', 7 * 24 * H),
        period: duration('GET /status poll period. Default 500ms.', 60_000, 50),
        failureThreshold: integer('Consecutive failed polls that make a server Unhealthy. Default 3.', 1, 100),
        readiness: oneOf('Smelter (Ready once Smelter answers) or SdkReady (also wait for SDK Ready).', [
          'Smelter',
          'SdkReady',
        ]),
        leaseTimeout: duration('A server whose sidecar is silent this long is Unhealthy. Default 3s.', 600_000, 500),
        sdkHealthTimeout: duration('When non-zero, SDK Health pings silent this long make it Unhealthy.', H),
      }),
    },
  );
}

const fleetStatus: JsonSchema = object('Observed by the controller.', {
  replicas: count('Servers of the fleet (every state but Shutdown).'),
  readyReplicas: count('Ready servers.'),
  allocatedReplicas: count('Allocated servers.'),
  drainingReplicas: count('Draining servers.'),
  updatedReplicas: count('Servers running the current template.'),
  observedGeneration: { description: 'metadata.generation last reconciled.', type: 'integer', format: 'int64' },
  selector: { description: 'Label selector of the fleet’s pods (scale subresource).', type: 'string' },
  conditions,
});

function minMaxRule(): Rule {
  const or = (f: string, d: number) => `(has(self.${f}) ? self.${f} : ${d})`;
  return {
    rule: `${or('maxReplicas', 100)} >= ${or('minReplicas', 0)}`,
    message: 'must be at least minReplicas',
    fieldPath: '.maxReplicas',
  };
}

const replicasBounds = {
  minReplicas: integer('Default 0.', 0, MAX_REPLICAS),
  maxReplicas: integer('Default 100.', 0, MAX_REPLICAS),
};

const POLICY_TYPES = ['Buffer', 'Predictive', 'Webhook', 'Schedule', 'Chain'] as const;
const policyKey = (type: string) => type.charAt(0).toLowerCase() + type.slice(1);

/**
 * A policy. Structural schemas cannot recurse, so nested policies (Schedule.policy, Chain items) are typed
 * `depth` levels deep; deeper ones are kept as they are and validated by the controller (core's parser).
 */
function policy(depth: number, description: string, withId: boolean): JsonSchema {
  const nested = (d: string, id: boolean): JsonSchema =>
    depth > 1
      ? policy(depth - 1, d, id)
      : {
          description: `${d} (validated by the controller at this depth)`,
          type: 'object',
          'x-kubernetes-preserve-unknown-fields': true,
        };
  const rules: Rule[] = POLICY_TYPES.map((type) => ({
    rule: `!has(self.${policyKey(type)}) || self.type == '${type}'`,
    message: `only allowed with type ${type}`,
    fieldPath: `.${policyKey(type)}`,
    reason: 'FieldValueForbidden' as const,
  }));
  for (const [type, what] of [
    ['Buffer', 'is required with type Buffer: bufferSize, a count like 2 or a percentage like "20%"'],
    ['Webhook', 'is required with type Webhook: url'],
    ['Schedule', 'is required with type Schedule: the policy applied inside the schedule'],
    ['Chain', 'is required with type Chain: a non-empty list of policies, each with an id'],
  ] as const)
    rules.push({
      rule: `self.type != '${type}' || has(self.${policyKey(type)})`,
      message: what,
      fieldPath: `.${policyKey(type)}`,
      reason: 'FieldValueRequired',
    });
  const properties: Record<string, JsonSchema> = {
    type: oneOf('The policy kind; its settings sit under the key of the same name.', [...POLICY_TYPES]),
    buffer: object(
      'Keep bufferSize Ready servers beyond the busy ones.',
      {
        bufferSize: {
          description: 'A count (0 or more) or a percentage of the total, "1%" to "99%".',
          'x-kubernetes-int-or-string': true,
          anyOf: [{ type: 'integer' }, { type: 'string' }],
          maxLength: 8,
          'x-kubernetes-validations': [
            {
              rule: `type(self) == int ? self >= 0 && self <= ${MAX_REPLICAS} : self.matches(${cel(PERCENT_1_99)})`,
              message: 'must be a count (0 or more) or a percentage from 1% to 99%',
            },
          ],
        },
        ...replicasBounds,
      },
      { required: ['bufferSize'], 'x-kubernetes-validations': [minMaxRule()] },
    ),
    predictive: object(
      'Keep Ready what arrives during one cold start at a high quantile of the arrival rate.',
      {
        coldStart: duration('Time from launch to Ready. Default 30s.', H, 100),
        quantile: {
          description: 'Quantile of Poisson arrivals kept Ready, strictly between 0 and 1. Default 0.999.',
          type: 'number',
          minimum: 0,
          maximum: 1,
          exclusiveMinimum: true,
          exclusiveMaximum: true,
        },
        window: duration('History looked at. Default 15m.', 24 * H),
        minReady: integer('Ready servers kept even with no recent arrival. Default 0.', 0, MAX_REPLICAS),
        ...replicasBounds,
      },
      {
        'x-kubernetes-validations': [
          minMaxRule(),
          {
            rule: `${msOrDefault('window', 15 * 60_000)} >= ${msOrDefault('coldStart', 30_000)}`,
            message: 'must be at least coldStart',
            fieldPath: '.window',
          },
        ] satisfies Rule[],
      },
    ),
    webhook: object(
      'Ask an HTTP endpoint (Agones FleetAutoscaleReview shape).',
      {
        url: {
          description: 'Absolute http(s) URL.',
          type: 'string',
          maxLength: 2048,
          pattern: HTTP_URL,
        },
        timeout: duration('A reply slower than this is a failure. Default 2s.', 60_000, 10),
        ...replicasBounds,
      },
      { required: ['url'], 'x-kubernetes-validations': [minMaxRule()] },
    ),
    schedule: object(
      'Apply policy only inside cron windows (UTC) and between optional start/end times.',
      {
        between: object(
          '',
          {
            start: { description: 'RFC 3339 time.', type: 'string', format: 'date-time' },
            end: { description: 'RFC 3339 time.', type: 'string', format: 'date-time' },
          },
          {
            'x-kubernetes-validations': [
              {
                rule: '!has(self.start) || !has(self.end) || timestamp(self.end) > timestamp(self.start)',
                message: 'must be after start',
                fieldPath: '.end',
              },
            ] satisfies Rule[],
          },
        ),
        activePeriod: object(
          '',
          {
            startCron: {
              description: '5-field cron (UTC) opening each window.',
              type: 'string',
              maxLength: 256,
              pattern: CRON,
            },
            duration: duration('Length of each window (at least 1m with startCron).', 31 * 24 * H),
          },
          {
            'x-kubernetes-validations': [
              {
                rule: `!has(self.startCron) || ${msOrDefault('duration', 0)} >= 60000.0`,
                message: 'is required with startCron: at least 1m, e.g. 10h',
                fieldPath: '.duration',
              },
            ] satisfies Rule[],
          },
        ),
        policy: nested('The policy applied inside the schedule.', false),
      },
      { required: ['policy'] },
    ),
    chain: {
      description: 'Policies tried in order; the first that applies wins.',
      type: 'array',
      minItems: 1,
      maxItems: 16,
      items: nested('A policy of the chain, with an id.', true),
      // Items typed one level down only: deeper ones are the controller's to check.
      ...(depth > 1 && {
        'x-kubernetes-validations': [
          {
            rule: 'self.all(p, !has(p.id) || self.exists_one(q, has(q.id) && q.id == p.id))',
            message: 'ids must be unique in the chain',
          },
        ] satisfies Rule[],
      }),
    },
  };
  if (withId)
    properties.id = { description: 'Names this policy in the chain.', type: 'string', minLength: 1, maxLength: 63 };
  return object(description, properties, { required: ['type'], 'x-kubernetes-validations': rules });
}

function autoscalerSpec(): JsonSchema {
  return object(
    'Sizes a SmelterFleet: the same document `smelter-fleet up -f` reads (packages/core/src/autoscaler-spec.ts).',
    {
      fleetName: { description: 'The SmelterFleet (same namespace) it sizes.', type: 'string', minLength: 1 },
      policy: policy(3, 'How the desired replica count is computed.', false),
      behavior: object('', {
        scaleDownStabilization: duration(
          'Scale down only to the highest recommendation over this window. Default 60s.',
          24 * H,
        ),
      }),
      sync: object(
        'When the autoscaler decides.',
        {
          type: oneOf('Event (react at once, default) or FixedInterval (poll).', ['Event', 'FixedInterval']),
          interval: duration('Poll period of FixedInterval. Default 30s.', H, 100),
        },
        {
          'x-kubernetes-validations': [
            {
              rule: "!has(self.interval) || (has(self.type) && self.type == 'FixedInterval')",
              message: 'only applies to type FixedInterval',
              fieldPath: '.interval',
              reason: 'FieldValueForbidden',
            },
          ] satisfies Rule[],
        },
      ),
    },
    { required: ['fleetName', 'policy'] },
  );
}

const autoscalerStatus: JsonSchema = object('Observed by the controller.', {
  currentReplicas: count('The fleet’s replicas when last observed.'),
  desiredReplicas: count('Replicas the policy asks for.'),
  lastScaleTime: { description: 'When the fleet was last resized.', type: 'string', format: 'date-time' },
  observedGeneration: { description: 'metadata.generation last reconciled.', type: 'integer', format: 'int64' },
  conditions,
});

function crd(
  kind: string,
  plural: string,
  shortName: string,
  spec: JsonSchema,
  specRequired: boolean,
  status: JsonSchema,
  extra: VersionExtras,
) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${CRD_GROUP}` },
    spec: {
      group: CRD_GROUP,
      names: {
        kind,
        listKind: `${kind}List`,
        plural,
        singular: kind.toLowerCase(),
        shortNames: [shortName],
        categories: ['smelter'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              ...(specRequired ? { required: ['spec'] } : {}),
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: {
                  type: 'object',
                  properties: { name: { type: 'string', maxLength: 63, pattern: NAME } },
                },
                spec,
                status,
              },
            },
          },
          ...extra,
        },
      ],
    },
  };
}

interface PrinterColumn {
  name: string;
  type: 'integer' | 'string' | 'date';
  jsonPath: string;
  description?: string;
  /** 0: shown by `kubectl get`; 1: only with `-o wide`. */
  priority?: number;
}

interface VersionExtras {
  subresources: {
    status: Record<string, never>;
    scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath: string };
  };
  additionalPrinterColumns: PrinterColumn[];
}

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

/** The SmelterFleet CRD: spec = core's fleet spec; status and scale subresources. */
export function smelterFleetCrd() {
  return crd(FLEET_KIND, FLEET_PLURAL, 'sfleet', { ...fleetSpec(), default: {} }, false, fleetStatus, {
    subresources: {
      status: {},
      scale: {
        specReplicasPath: '.spec.replicas',
        statusReplicasPath: '.status.replicas',
        labelSelectorPath: '.status.selector',
      },
    },
    additionalPrinterColumns: [
      { name: 'Desired', type: 'integer', jsonPath: '.spec.replicas', description: 'Servers wanted' },
      { name: 'Ready', type: 'integer', jsonPath: '.status.readyReplicas' },
      { name: 'Allocated', type: 'integer', jsonPath: '.status.allocatedReplicas' },
      { name: 'Draining', type: 'integer', jsonPath: '.status.drainingReplicas' },
      age,
      { name: 'Current', type: 'integer', jsonPath: '.status.replicas', priority: 1 },
      { name: 'Region', type: 'string', jsonPath: '.spec.region', priority: 1 },
    ],
  });
}

/** The SmelterFleetAutoscaler CRD: spec = core's autoscaler spec; status subresource. */
export function smelterFleetAutoscalerCrd() {
  return crd(AUTOSCALER_KIND, AUTOSCALER_PLURAL, 'sfas', autoscalerSpec(), true, autoscalerStatus, {
    subresources: { status: {} },
    additionalPrinterColumns: [
      { name: 'Fleet', type: 'string', jsonPath: '.spec.fleetName' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policy.type' },
      { name: 'Desired', type: 'integer', jsonPath: '.status.desiredReplicas' },
      age,
      { name: 'Current', type: 'integer', jsonPath: '.status.currentReplicas', priority: 1 },
    ],
  });
}

/** File names of the CRDs in deploy/crds (and the chart's crds/ folder), with their objects. */
export function crdFiles(): { file: string; crd: ReturnType<typeof smelterFleetCrd> }[] {
  return [smelterFleetCrd(), smelterFleetAutoscalerCrd()].map((c) => ({
    file: `${CRD_GROUP}_${c.spec.names.plural}.yaml`,
    crd: c,
  }));
}

/** A CRD as the YAML file committed in deploy/crds (generated; the header says so). */
export function crdYaml(crd: object): string {
  return (
    '# Generated by scripts/gen-crds.mjs from packages/kubernetes/src/crds.ts (pnpm gen:crds): do not edit.\n' +
    stringify(crd, { lineWidth: 0, aliasDuplicateObjects: false })
  );
}

/**
 * The objects of a multi-document YAML manifest (`kubectl apply -f` style: deploy/crds, `helm template` output), as
 * plain data; empty documents are skipped. Throws on invalid YAML, naming the line.
 */
export function parseYamlObjects(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const doc of parseAllDocuments(text)) {
    const err = doc.errors[0];
    if (err) throw new Error(`invalid YAML: ${err.message}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value as Record<string, unknown>);
  }
  return out;
}
