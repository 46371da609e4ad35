import { describe, expect, it } from '@jest/globals';
import { checkHistory, type HistoryEvent } from './history-checker.js';

// A tiny language for hand-made histories: [time, id, type, op, composition, server?]
type Row = [number, string, HistoryEvent['type'], HistoryEvent['op'], string, string?];
const history = (rows: Row[]): HistoryEvent[] =>
  rows.map(([time, id, type, op, compositionId, server]) => ({
    time,
    id,
    type,
    op,
    compositionId,
    ...(server ? { server, token: `t-${compositionId}` } : {}),
  }));
const kinds = (events: HistoryEvent[], options = {}) => checkHistory(events, options).violations.map((v) => v.kind);

describe('checkHistory', () => {
  it('accepts a clean history: reuse after release, idempotent retries, failed calls', () => {
    const report = checkHistory(
      history([
        [0, 'a1', 'invoke', 'allocate', 'c1'],
        [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
        [2, 'a2', 'invoke', 'allocate', 'c1'], // retry
        [3, 'a2', 'ok', 'allocate', 'c1', 's1'],
        [4, 'r1', 'invoke', 'release', 'c1'],
        [5, 'a3', 'invoke', 'allocate', 'c2'], // may get s1 once c1's release took effect
        [6, 'r1', 'ok', 'release', 'c1'],
        [7, 'a3', 'ok', 'allocate', 'c2', 's1'],
        [8, 'a4', 'invoke', 'allocate', 'c3'],
        [9, 'a4', 'fail', 'allocate', 'c3'],
      ]),
    );
    expect(report.violations).toEqual([]);
    expect(report).toMatchObject({ invocations: 5, allocateOk: 3, releaseOk: 1, failed: 1, retriedCompositions: 1 });
  });

  it('catches one server held by two compositions at once', () => {
    const events = history([
      [0, 'a1', 'invoke', 'allocate', 'c1'],
      [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
      [2, 'a2', 'invoke', 'allocate', 'c2'],
      [3, 'a2', 'ok', 'allocate', 'c2', 's1'],
      [4, 'r1', 'invoke', 'release', 'c1'],
      [5, 'r1', 'ok', 'release', 'c1'],
    ]);
    const report = checkHistory(events);
    expect(report.violations.map((v) => v.kind)).toEqual(['double-allocation']);
    expect(report.violations[0]!.message).toMatch(/server s1 held by "c1" and "c2"/);
  });

  it('catches a double allocation hidden behind an earlier long holding', () => {
    // c3 overlaps c1 (still held) though c2, sorted between them, ended first.
    expect(
      kinds(
        history([
          [0, 'a1', 'invoke', 'allocate', 'c1'],
          [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
          [2, 'a2', 'invoke', 'allocate', 'c2'],
          [3, 'a2', 'ok', 'allocate', 'c2', 's1'],
          [4, 'r2', 'invoke', 'release', 'c2'],
          [5, 'a3', 'invoke', 'allocate', 'c3'],
          [6, 'a3', 'ok', 'allocate', 'c3', 's1'],
        ]),
      ),
    ).toEqual(['double-allocation', 'double-allocation']);
  });

  it('does not blame an indeterminate release: the holding may end at its invoke', () => {
    expect(
      kinds(
        history([
          [0, 'a1', 'invoke', 'allocate', 'c1'],
          [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
          [2, 'r1', 'invoke', 'release', 'c1'],
          [3, 'r1', 'fail', 'release', 'c1'],
          [4, 'a2', 'invoke', 'allocate', 'c2'],
          [5, 'a2', 'ok', 'allocate', 'c2', 's1'],
        ]),
      ),
    ).toEqual([]);
  });

  it('catches a retry that got another server, or the same server with another token', () => {
    expect(
      kinds(
        history([
          [0, 'a1', 'invoke', 'allocate', 'c1'],
          [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
          [2, 'a2', 'invoke', 'allocate', 'c1'],
          [3, 'a2', 'ok', 'allocate', 'c1', 's2'],
        ]),
      ),
    ).toEqual(['retry-changed']);
    const sameServer = history([
      [0, 'a1', 'invoke', 'allocate', 'c1'],
      [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
      [2, 'a2', 'invoke', 'allocate', 'c1'],
      [3, 'a2', 'ok', 'allocate', 'c1', 's1'],
    ]);
    sameServer[3]!.token = 'another';
    expect(checkHistory(sameServer).violations[0]?.message).toMatch(/with another token/);
  });

  it('catches an acknowledged allocation the store lost', () => {
    const events = history([
      [0, 'a1', 'invoke', 'allocate', 'c1'],
      [1, 'a1', 'ok', 'allocate', 'c1', 's1'],
      [2, 'a2', 'invoke', 'allocate', 'c2'],
      [3, 'a2', 'ok', 'allocate', 'c2', 's2'],
      [4, 'r2', 'invoke', 'release', 'c2'],
    ]);
    expect(kinds(events, { finalAllocations: [] })).toEqual(['lost-allocation']);
    expect(kinds(events, { finalAllocations: [{ compositionId: 'c1', serverName: 's1', token: 't-c1' }] })).toEqual([]);
    expect(kinds(events, { finalAllocations: [{ compositionId: 'c1', serverName: 's3', token: 't-c1' }] })).toEqual([
      'lost-allocation',
    ]);
  });

  it('checks a mid-run listing only for compositions surely held while it was taken', () => {
    const events = history([
      [0, 'a1', 'invoke', 'allocate', 'c1'],
      [1, 'a1', 'ok', 'allocate', 'c1', 's1'], // held throughout: must be listed
      [2, 'a2', 'invoke', 'allocate', 'c2'],
      [6, 'a2', 'ok', 'allocate', 'c2', 's2'], // answered after the listing began: may be missing
      [7, 'r1', 'invoke', 'release', 'c1'], // released after the listing ended: still required
      [8, 'r1', 'ok', 'release', 'c1'],
    ]);
    const finalAt = { from: 4, to: 5 };
    expect(kinds(events, { finalAllocations: [], finalAt })).toEqual(['lost-allocation']);
    expect(
      kinds(events, { finalAllocations: [{ compositionId: 'c1', serverName: 's1', token: 't-c1' }], finalAt }),
    ).toEqual([]);
  });

  it('reports completions without an invoke and double invokes as malformed', () => {
    expect(
      kinds(
        history([
          [0, 'a1', 'ok', 'allocate', 'c1', 's1'],
          [1, 'a2', 'invoke', 'allocate', 'c2'],
          [2, 'a2', 'invoke', 'allocate', 'c2'],
          [3, 'a2', 'ok', 'release', 'c2'],
        ]),
      ),
    ).toEqual(['malformed', 'malformed', 'malformed']);
  });
});
