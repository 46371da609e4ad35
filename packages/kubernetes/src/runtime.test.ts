import { describe, expect, it } from '@jest/globals';
import { exitOf } from './runtime.js';

describe('exitOf', () => {
  it('is nothing while the pod runs', () => {
    expect(exitOf({ metadata: { name: 'p' }, status: { phase: 'Running' } })).toBeUndefined();
    expect(exitOf({ metadata: { name: 'p' }, status: { phase: 'Pending' } })).toBeUndefined();
    expect(
      exitOf({
        metadata: { name: 'p' },
        status: { phase: 'Running', containerStatuses: [sidecarTerminated()] },
      }),
    ).toBeUndefined(); // the sidecar alone ending is the sidecar's report to make, not an exit of Smelter
  });

  it('reports Smelter ended, with its exit code and reason', () => {
    const exit = exitOf({
      metadata: { name: 'p' },
      status: {
        phase: 'Running',
        containerStatuses: [
          {
            name: 'smelter',
            image: 'i',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
          },
        ],
      },
    });
    expect(exit).toEqual({
      name: 'p',
      code: 137,
      signal: null,
      expected: false,
      lastOutput: ['smelter container terminated (OOMKilled), exit code 137'],
    });
  });

  it('reports a failed or evicted pod', () => {
    expect(
      exitOf({ metadata: { name: 'p' }, status: { phase: 'Failed', reason: 'Evicted', message: 'low on memory' } }),
    ).toMatchObject({ name: 'p', code: null, lastOutput: ['pod Failed (Evicted: low on memory)'] });
  });
});

function sidecarTerminated() {
  return {
    name: 'sidecar',
    image: 'i',
    imageID: '',
    ready: false,
    restartCount: 0,
    state: { terminated: { exitCode: 1 } },
  };
}
