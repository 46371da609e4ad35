import { describe, expect, it } from '@jest/globals';
import { CompositionWatch } from './composition.js';

describe('CompositionWatch', () => {
  it('is not over before any output exists', () => {
    const w = new CompositionWatch('c', 0);
    w.observeOutputs([], 0);
    expect(w.finished(10)).toBeUndefined();
  });

  it('is over when every output sent OUTPUT_DONE, though they stay listed', () => {
    const w = new CompositionWatch('c', 100);
    w.observeOutputs(['a', 'b'], 0);
    w.observeEvent({ type: 'OUTPUT_DONE', output_id: 'a' }, 10);
    w.observeOutputs(['a', 'b'], 20);
    expect(w.finished(500)).toBeUndefined();
    w.observeEvent({ type: 'OUTPUT_DONE', output_id: 'b' }, 30);
    w.observeOutputs(['a', 'b'], 40);
    expect(w.finished(129)).toBeUndefined(); // settling
    expect(w.finished(130)).toBe('every output ended: a done, b done');
    expect(w.settlesAt()).toBe(130);
  });

  it('counts a critical OUTPUT_ERROR as ended, other severities not', () => {
    const w = new CompositionWatch('c', 0);
    w.observeOutputs(['a'], 0);
    w.observeEvent({ type: 'OUTPUT_ERROR', output_id: 'a', severity: 'transient' }, 1);
    w.observeEvent({ type: 'OUTPUT_ERROR', output_id: 'a', severity: 'warning' }, 1);
    expect(w.finished(2)).toBeUndefined();
    w.observeEvent({ type: 'OUTPUT_ERROR', output_id: 'a', severity: 'critical' }, 3);
    expect(w.finished(3)).toMatch(/a failed/);
  });

  it('ends a WHEP output (never OUTPUT_DONE) only when it is unregistered', () => {
    const w = new CompositionWatch('c', 0);
    w.observeOutputs(['whep'], 0);
    w.observeOutputs(['whep'], 1000);
    expect(w.finished(1000)).toBeUndefined();
    w.observeOutputs([], 2000);
    expect(w.finished(2000)).toBe('every output ended: whep unregistered');
  });

  it('does not mistake an output swap for the end', () => {
    const w = new CompositionWatch('c', 1000);
    w.observeOutputs(['old'], 0);
    w.observeOutputs([], 100); // old unregistered, new not yet registered
    w.observeOutputs(['new'], 300);
    expect(w.finished(5000)).toBeUndefined();
    expect(w.settlesAt()).toBeUndefined();
  });

  it('counts an output that ended between two polls', () => {
    const w = new CompositionWatch('c', 0);
    w.observeEvent({ type: 'OUTPUT_DONE', output_id: 'quick' }, 5);
    expect(w.finished(5)).toMatch(/quick done/);
  });

  it('treats an id registered again after unregistering as a new live output', () => {
    const w = new CompositionWatch('c', 0);
    w.observeOutputs(['a'], 0);
    w.observeOutputs([], 1);
    w.observeOutputs(['a'], 2);
    expect(w.finished(3)).toBeUndefined();
  });
});
