import { describe, expect, it } from '@jest/globals';
import { marksPatch, podHasMarks, podMarks } from './labeler.js';

describe('podMarks', () => {
  it('protects a pod while a composition runs on it', () => {
    expect(podMarks({ state: 'Ready' })).toEqual({ state: 'Ready', protect: false });
    expect(podMarks({ state: 'Allocated', compositionId: 'c1' })).toEqual({ state: 'Allocated', protect: true });
    expect(podMarks({ state: 'Draining', compositionId: 'c1' })).toEqual({ state: 'Draining', protect: true });
    expect(podMarks({ state: 'Draining' })).toEqual({ state: 'Draining', protect: false });
    expect(podMarks({ state: 'Shutdown', compositionId: 'c1' })).toEqual({ state: 'Shutdown', protect: false });
  });

  it('patches the state label and the safe-to-evict annotation, and knows when a pod has them', () => {
    const patch = marksPatch({ state: 'Allocated', protect: true });
    expect(patch).toEqual({
      metadata: {
        labels: { 'smelterfleet.dev/state': 'Allocated' },
        annotations: { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false' },
      },
    });
    const pod = patch as { metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
    expect(podHasMarks(pod, { state: 'Allocated', protect: true })).toBe(true);
    expect(podHasMarks(pod, { state: 'Allocated', protect: false })).toBe(false);
    expect(podHasMarks(pod, { state: 'Ready', protect: true })).toBe(false);
    expect(podHasMarks({}, { state: 'Ready', protect: false })).toBe(false);
  });
});
