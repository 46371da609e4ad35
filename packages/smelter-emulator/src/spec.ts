import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Schema = { [k: string]: unknown };

/** Smelter's own OpenAPI description, shipped unchanged beside this package. */
export const specPath = new URL('../spec/openapi_specification.json', import.meta.url);

interface Spec {
  paths: Record<
    string,
    Record<string, { requestBody?: { content: Record<string, { schema: Schema }>; required?: boolean } }>
  >;
  components: { schemas: Record<string, Schema> };
}

export const spec = JSON.parse(readFileSync(specPath, 'utf8')) as Spec;

/**
 * The spec writes serde's internally tagged enums as `allOf: [{$ref: X}, {properties: {type: {enum: [tag]}}}]`,
 * while X often says `additionalProperties: false`; read literally that rejects the tag itself. Serde accepts
 * the tag beside X's fields, so for validation each such pair is merged into one object schema.
 */
function mergeTag(base: Schema, tag: Schema): Schema {
  const s = resolve(base);
  if (Array.isArray(s.oneOf)) return { ...s, oneOf: (s.oneOf as Schema[]).map((v) => mergeTag(v, tag)) };
  if (Array.isArray(s.allOf)) return mergeTag(untag(s), tag);
  return {
    ...s,
    properties: { ...(s.properties as object | undefined), ...(tag.properties as object | undefined) },
    required: [...((s.required as string[] | undefined) ?? []), ...((tag.required as string[] | undefined) ?? [])],
  };
}

function untag(node: unknown): Schema {
  const walk = (n: unknown): unknown => {
    if (Array.isArray(n)) return n.map(walk);
    if (typeof n !== 'object' || n === null) return n;
    // serde takes the first variant that fits (untagged enums), where JSON Schema's oneOf wants exactly one.
    if (Array.isArray((n as Schema).oneOf)) {
      const { oneOf, ...rest } = n as Schema;
      return walk({ ...rest, anyOf: oneOf });
    }
    const o = n as Schema;
    const all = o.allOf as Schema[] | undefined;
    if (all?.length === 2 && typeof all[0]!.$ref === 'string' && variantTag(all[1]!) !== undefined) {
      const { allOf: _, ...rest } = o;
      return { ...rest, ...(walk(mergeTag(all[0]!, all[1]!)) as Schema) };
    }
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, walk(v)]));
  };
  return walk(node) as Schema;
}

const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: false });
// Refs in the spec are `#/components/schemas/X`, relative to the document root.
ajv.addSchema({ $id: 'smelter', components: untag(spec.components) });

const validators = new Map<string, ValidateFunction>();

/** A validator for a schema of the spec (e.g. `{ $ref: '#/components/schemas/RegisterInput' }`). */
export function validator(schema: Schema): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(withAbsoluteRefs(untag(schema)));
    validators.set(key, v);
  }
  return v;
}

function withAbsoluteRefs(node: unknown): Schema {
  const walk = (n: unknown): unknown => {
    if (Array.isArray(n)) return n.map(walk);
    if (typeof n !== 'object' || n === null) return n;
    return Object.fromEntries(
      Object.entries(n).map(([k, v]) => [
        k,
        k === '$ref' && typeof v === 'string' && v.startsWith('#') ? `smelter${v}` : walk(v),
      ]),
    );
  };
  return walk(node) as Schema;
}

export function resolve(schema: Schema): Schema {
  let s = schema;
  while (typeof s.$ref === 'string') {
    const name = s.$ref.replace('#/components/schemas/', '');
    const next = spec.components.schemas[name];
    if (!next) throw new Error(`unknown schema ${s.$ref}`);
    s = { ...next, ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')) };
  }
  return s;
}

/** The `type` tag of a tagged-union variant (`allOf: [X, {properties: {type: {enum: [tag]}}}]`), if any. */
export function variantTag(variant: Schema): string | undefined {
  for (const part of [variant, ...((variant.allOf as Schema[] | undefined) ?? [])]) {
    const type = (part.properties as Record<string, Schema> | undefined)?.type;
    const e = type?.enum as string[] | undefined;
    if (e?.length === 1) return e[0];
  }
  return undefined;
}

/** The variants of a tagged union schema, by tag. */
export function variants(schema: Schema): Map<string, Schema> {
  const out = new Map<string, Schema>();
  for (const v of (resolve(schema).oneOf as Schema[] | undefined) ?? []) {
    const tag = variantTag(v);
    if (tag) out.set(tag, v);
  }
  return out;
}

/**
 * A minimal instance of a schema: required properties only, the first enum value, the first
 * union variant (or the one `pick` chooses). Used for stats reports and by the test corpus.
 */
export function sample(schema: Schema, pick: (options: Schema[]) => Schema = (o) => o[0]!, depth = 0): Json {
  if (depth > 40) throw new Error('schema too deep to sample');
  const s = resolve(schema);
  if (s.const !== undefined) return s.const as Json;
  if (Array.isArray(s.enum)) return s.enum[0] as Json;
  const union = (s.oneOf ?? s.anyOf) as Schema[] | undefined;
  if (union) return sample(pick(union), pick, depth + 1);
  if (Array.isArray(s.allOf)) {
    const merged: Record<string, Json> = {};
    for (const part of s.allOf as Schema[]) Object.assign(merged, sample(part, pick, depth + 1));
    return merged;
  }
  const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string | undefined];
  const type = types.find((t) => t !== 'null') ?? (types.includes('null') ? 'null' : 'object');
  switch (type) {
    case 'null':
      return null;
    case 'boolean':
      return false;
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number'
        ? s.minimum
        : typeof s.exclusiveMinimum === 'number'
          ? s.exclusiveMinimum + 1
          : 1;
    case 'string':
      return 'x'.repeat(typeof s.minLength === 'number' ? Math.max(1, s.minLength) : 1);
    case 'array': {
      const min = typeof s.minItems === 'number' ? s.minItems : 0;
      return Array.from({ length: min }, () => sample((s.items as Schema) ?? {}, pick, depth + 1));
    }
    default: {
      const out: Record<string, Json> = {};
      const props = (s.properties as Record<string, Schema> | undefined) ?? {};
      for (const key of (s.required as string[] | undefined) ?? [])
        out[key] = sample(props[key] ?? {}, pick, depth + 1);
      return out;
    }
  }
}

/** serde/axum-like text for the first validation error. */
export function describeErrors(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid body';
  const at = e.instancePath || '(root)';
  if (e.keyword === 'additionalProperties') return `unknown field \`${String(e.params.additionalProperty)}\` at ${at}`;
  if (e.keyword === 'required') return `missing field \`${String(e.params.missingProperty)}\` at ${at}`;
  if (e.keyword === 'oneOf' || e.keyword === 'anyOf') return `data did not match any variant of untagged enum at ${at}`;
  if (e.keyword === 'enum')
    return `unknown variant at ${at}, expected one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
  return `invalid value at ${at}: ${e.message ?? ''}`;
}
