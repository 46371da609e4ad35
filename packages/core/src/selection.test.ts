import { describe, expect, it } from '@jest/globals';
import { matchesLabels, selectServer } from './selection.js';

const s = (name: string, node: string, createdAt = 0) => ({ name, node, createdAt });

describe('selectServer', () => {
  const candidates = [s('a', 'n1', 3), s('b', 'n2', 2), s('c', 'n3', 1)];
  const load = new Map([
    ['n1', 2],
    ['n2', 5],
    ['n3', 0],
  ]);

  it('Packed fills the busiest node first', () => {
    expect(selectServer(candidates, load, 'Packed')?.name).toBe('b');
  });

  it('Distributed spreads to the least busy node', () => {
    expect(selectServer(candidates, load, 'Distributed')?.name).toBe('c');
  });

  it('breaks ties by node name, then age, then name', () => {
    const tied = [s('z', 'n', 5), s('y', 'n', 1), s('x', 'n', 1), s('w', 'o', 0)];
    expect(selectServer(tied, new Map(), 'Packed')?.name).toBe('x');
    expect(selectServer(tied, new Map(), 'Distributed')?.name).toBe('x');
  });

  it('returns undefined with no candidate', () => {
    expect(selectServer([], new Map(), 'Packed')).toBeUndefined();
  });
});

describe('matchesLabels', () => {
  it('requires every selector label', () => {
    expect(matchesLabels({ labels: { gpu: 't4', tier: 'a' } }, { gpu: 't4' })).toBe(true);
    expect(matchesLabels({ labels: { gpu: 't4' } }, { gpu: 't4', tier: 'a' })).toBe(false);
    expect(matchesLabels({ labels: {} }, {})).toBe(true);
  });
});
