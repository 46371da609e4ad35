import { invalidArgument } from './errors.js';
import type { AllocationRequest } from './types.js';

const COMPOSITION_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** DNS-1123 label, as Kubernetes names are. */
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** Longest wait an Allocate may ask for, ms. */
export const MAX_ALLOCATE_WAIT_MS = 300_000;
const MAX_METADATA_ENTRIES = 64;
const MAX_METADATA_VALUE = 4096;

export function checkCompositionId(field: string, value: string): void {
  if (value === '') throw invalidArgument(field, 'is required');
  if (!COMPOSITION_ID.test(value))
    throw invalidArgument(field, 'must be 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit');
}

export function checkName(field: string, value: string): void {
  if (!NAME.test(value))
    throw invalidArgument(field, `"${value}" must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)`);
}

export function checkLabels(field: string, labels: Record<string, string>): void {
  for (const [key, value] of Object.entries(labels)) {
    if (!LABEL_KEY.test(key)) throw invalidArgument(`${field}.${key}`, 'is not a valid label key');
    if (!LABEL_VALUE.test(value)) throw invalidArgument(`${field}.${key}`, `"${value}" is not a valid label value`);
  }
}

/** Whether `s` has more than `max` characters, counted as Unicode code points (as JSON Schema's maxLength does). */
function longerThan(s: string, max: number): boolean {
  if (s.length <= max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return true;
  return false;
}

/** Throws INVALID_ARGUMENT naming the first bad field of an allocation request. */
export function checkAllocationRequest(req: AllocationRequest, waitMs = 0): void {
  checkCompositionId('composition_id', req.compositionId);
  if (req.fleet === '' && Object.keys(req.matchLabels).length === 0)
    throw invalidArgument('fleet', 'is required (or match_labels)');
  if (req.fleet !== '') checkName('fleet', req.fleet);
  checkLabels('match_labels', req.matchLabels);
  const entries = Object.entries(req.metadata);
  if (entries.length > MAX_METADATA_ENTRIES)
    throw invalidArgument('metadata', `at most ${MAX_METADATA_ENTRIES} entries`);
  for (const [key, value] of entries) {
    if (key === '' || longerThan(key, 128))
      throw invalidArgument('metadata', `key "${key.slice(0, 32)}" must be 1-128 characters`);
    if (longerThan(value, MAX_METADATA_VALUE))
      throw invalidArgument(`metadata.${key}`, `at most ${MAX_METADATA_VALUE} characters`);
  }
  if (!Number.isFinite(waitMs) || waitMs < 0) throw invalidArgument('wait', 'must not be negative');
  if (waitMs > MAX_ALLOCATE_WAIT_MS) throw invalidArgument('wait', `must be at most ${MAX_ALLOCATE_WAIT_MS / 1000}s`);
}
