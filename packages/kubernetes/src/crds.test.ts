import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AUTOSCALER_KIND,
  autoscalerSpecFromObject,
  FLEET_API_VERSION,
  FLEET_KIND,
  FLEET_PARSERS,
  fleetSpecFromObject,
  parseManifest,
} from '@smelter-fleet/core';
import { parse } from 'yaml';
import {
  AUTOSCALER_PLURAL,
  CRD_GROUP,
  CRD_VERSION,
  crdFiles,
  crdYaml,
  FLEET_PLURAL,
  smelterFleetAutoscalerCrd,
  smelterFleetCrd,
  type JsonSchema,
} from './crds.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The schema at a path of property names (`[]` is a list's items). */
function at(schema: JsonSchema, path: string[]): JsonSchema {
  let s = schema;
  for (const key of path) {
    const next = key === '[]' ? s.items : (s.properties as Record<string, JsonSchema> | undefined)?.[key];
    if (!next) throw new Error(`no schema at ${path.join('.')} (${key})`);
    s = next as JsonSchema;
  }
  return s;
}

const specOf = (crd: ReturnType<typeof smelterFleetCrd>) => crd.spec.versions[0]!.schema.openAPIV3Schema;

/** The field names core's parser allows where `doc` puts an unknown field `zzUnknown`, read from its error. */
function allowedByCore(parse: (doc: unknown) => unknown, doc: unknown): string[] {
  try {
    parse(doc);
  } catch (err) {
    const m = /unknown field \(allowed: ([^)]*)\)/.exec((err as Error).message);
    if (m) return m[1]!.split(', ').sort();
    throw err;
  }
  throw new Error('expected the parser to refuse the unknown field');
}

/** A document with `{ zzUnknown: 1 }` merged at `path` under spec. */
function probe(kind: string, path: string[], base: Record<string, unknown> = {}): unknown {
  const spec: Record<string, unknown> = structuredClone(base);
  let o = spec;
  for (const key of path) o = (o[key] ??= {}) as Record<string, unknown>;
  o.zzUnknown = 1;
  return { apiVersion: FLEET_API_VERSION, kind, metadata: { name: 'x' }, spec };
}

const keys = (s: JsonSchema) => Object.keys(s.properties as object).sort();

describe('CRDs', () => {
  it('use core’s group, version and kinds', () => {
    expect(`${CRD_GROUP}/${CRD_VERSION}`).toBe(FLEET_API_VERSION);
    const fleet = smelterFleetCrd();
    const autoscaler = smelterFleetAutoscalerCrd();
    expect(fleet.metadata.name).toBe(`${FLEET_PLURAL}.smelterfleet.dev`);
    expect(fleet.spec.names).toMatchObject({ kind: FLEET_KIND, plural: 'smelterfleets', shortNames: ['sfleet'] });
    expect(autoscaler.metadata.name).toBe(`${AUTOSCALER_PLURAL}.smelterfleet.dev`);
    expect(autoscaler.spec.names).toMatchObject({
      kind: AUTOSCALER_KIND,
      plural: 'smelterfleetautoscalers',
      shortNames: ['sfas'],
    });
    expect(fleet.spec.versions[0]!.subresources).toEqual({
      status: {},
      scale: {
        specReplicasPath: '.spec.replicas',
        statusReplicasPath: '.status.replicas',
        labelSelectorPath: '.status.selector',
      },
    });
    expect(fleet.spec.versions[0]!.additionalPrinterColumns.slice(0, 5).map((c) => c.name)).toEqual([
      'Desired',
      'Ready',
      'Allocated',
      'Draining',
      'Age',
    ]);
  });

  it.each(['deploy/crds', 'deploy/helm/smelter-fleet/crds'])(
    'are committed up to date in %s (pnpm gen:crds)',
    (dir) => {
      const files = crdFiles();
      expect(readdirSync(join(root, dir)).sort()).toEqual(files.map((f) => f.file).sort());
      for (const { file, crd } of files) {
        const text = readFileSync(join(root, dir, file), 'utf8');
        expect(text).toBe(crdYaml(crd));
        expect(parse(text)).toEqual(JSON.parse(JSON.stringify(crd)));
      }
    },
  );

  // Every mapping core's parser checks for unknown fields has exactly the same fields in the schema: a field added
  // to core (or the schema) alone fails here.
  it.each([
    [[]],
    [['template']],
    [['template', 'metadata']],
    [['template', 'spec']],
    [['template', 'spec', 'resources']],
    [['template', 'spec', 'kubernetes']],
    [['strategy']],
    [['strategy', 'rollingUpdate']],
    [['drain']],
    [['health']],
  ])('SmelterFleet spec.%j has the fields core’s parser allows', (path) => {
    const schema = at(specOf(smelterFleet()), ['spec', ...path]);
    expect(keys(schema)).toEqual(allowedByCore(fleetSpecFromObject, probe(FLEET_KIND, path)));
  });

  const buffer = { fleetName: 'f', policy: { type: 'Buffer', buffer: { bufferSize: 1 } } };
  const policyOf = (type: string, settings: Record<string, unknown> = {}) => ({
    fleetName: 'f',
    policy: { type, [type.charAt(0).toLowerCase() + type.slice(1)]: settings },
  });
  it.each([
    [[], buffer],
    [['behavior'], buffer],
    [['sync'], buffer],
    [['policy', 'buffer'], buffer],
    [['policy', 'predictive'], policyOf('Predictive')],
    [['policy', 'webhook'], policyOf('Webhook', { url: 'http://x' })],
    [['policy', 'schedule'], policyOf('Schedule', { policy: buffer.policy })],
    [['policy', 'schedule', 'between'], policyOf('Schedule', { policy: buffer.policy })],
    [['policy', 'schedule', 'activePeriod'], policyOf('Schedule', { policy: buffer.policy })],
  ])('SmelterFleetAutoscaler spec.%j has the fields core’s parser allows', (path, base) => {
    const schema = at(specOf(smelterFleetAutoscaler()), ['spec', ...path]);
    expect(keys(schema)).toEqual(allowedByCore(autoscalerSpecFromObject, probe(AUTOSCALER_KIND, path, base)));
  });

  it('types nested policies (Schedule, Chain) three levels deep, with ids only in chains', () => {
    const spec = specOf(smelterFleetAutoscaler());
    const policy = at(spec, ['spec', 'policy']);
    expect(keys(policy)).toEqual(['buffer', 'chain', 'predictive', 'schedule', 'type', 'webhook']);
    expect(keys(at(policy, ['chain', '[]']))).toContain('id');
    expect(at(policy, ['chain', '[]', 'schedule', 'policy', 'type']).enum).toEqual(at(policy, ['type']).enum);
    expect(at(policy, ['chain', '[]', 'chain', '[]', 'chain', '[]'])).toMatchObject({
      'x-kubernetes-preserve-unknown-fields': true,
    });
  });

  it.each([
    [['scheduling'], 'Packed'],
    [['strategy', 'type'], 'RollingUpdate'],
    [['drain', 'onRelease'], 'Recycle'],
    [['health', 'readiness'], 'Smelter'],
    [['template', 'spec', 'kubernetes', 'mode'], 'Sidecar'],
    [['template', 'spec', 'kubernetes', 'addressType'], 'PodIP'],
    [['template', 'spec', 'kubernetes', 'portPolicy'], 'None'],
  ])('SmelterFleet spec.%j enum is what core accepts', (path) => {
    const schema = at(specOf(smelterFleet()), ['spec', ...path]);
    const doc = probe(FLEET_KIND, []) as { spec: Record<string, unknown> };
    delete doc.spec.zzUnknown;
    let o = doc.spec;
    for (const key of path.slice(0, -1)) o = (o[key] = {}) as Record<string, unknown>;
    o[path.at(-1)!] = 'zz';
    expect(() => fleetSpecFromObject(doc)).toThrow(`must be one of ${(schema.enum as string[]).join(', ')} `);
  });

  it.each(
    readdirSync(join(root, 'deploy/examples/kubernetes'))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => `kubernetes/${f}`),
  )('example deploy/examples/%s parses with core', (file) => {
    const text = readFileSync(join(root, 'deploy/examples', file), 'utf8');
    const docs = parseManifest(text, file, { ...FLEET_PARSERS, [AUTOSCALER_KIND]: autoscalerSpecFromObject });
    expect(docs.length).toBeGreaterThan(0);
  });
});

const smelterFleet = smelterFleetCrd;
const smelterFleetAutoscaler = smelterFleetAutoscalerCrd;
