import { describe, expect, it } from '@jest/globals';
import { FleetError } from './errors.js';
import { checkAllocationRequest } from './validation.js';

const ok = { fleet: 'local', matchLabels: {}, compositionId: 'comp-1', metadata: {} };

function fieldOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FleetError);
    expect((e as FleetError).code).toBe('INVALID_ARGUMENT');
    return (e as FleetError).field;
  }
  return undefined;
}

describe('checkAllocationRequest', () => {
  it('accepts a good request', () => {
    expect(fieldOf(() => checkAllocationRequest(ok, 1000))).toBeUndefined();
    expect(fieldOf(() => checkAllocationRequest({ ...ok, fleet: '', matchLabels: { gpu: 't4' } }))).toBeUndefined();
    // Lengths are in code points: an emoji is one character (two UTF-16 units).
    const emoji = { ...ok, metadata: { ['😀'.repeat(128)]: '😀'.repeat(4096) } };
    expect(fieldOf(() => checkAllocationRequest(emoji))).toBeUndefined();
  });

  it.each([
    [{ ...ok, compositionId: '' }, 0, 'composition_id'],
    [{ ...ok, compositionId: 'has space' }, 0, 'composition_id'],
    [{ ...ok, compositionId: 'x'.repeat(129) }, 0, 'composition_id'],
    [{ ...ok, fleet: '' }, 0, 'fleet'],
    [{ ...ok, fleet: 'Not_A_Name' }, 0, 'fleet'],
    [{ ...ok, matchLabels: { 'bad key!': 'v' } }, 0, 'match_labels.bad key!'],
    [{ ...ok, metadata: { k: 'x'.repeat(5000) } }, 0, 'metadata.k'],
    [ok, -1, 'wait'],
    [ok, 301_000, 'wait'],
  ])('names the bad field (%#)', (req, wait, field) => {
    expect(fieldOf(() => checkAllocationRequest(req, wait))).toBe(field);
  });
});
