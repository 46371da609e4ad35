import { describe, expect, it } from '@jest/globals';
import { FleetSpecError, parseDurationMs, parseFleetFile } from './fleet-spec.js';

const good = `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata:
  name: local
spec:
  replicas: 2
  template:
    metadata:
      labels:
        gpu: none
    spec:
      env:
        SMELTER_OUTPUT_FRAMERATE: "25"
  drain:
    onRelease: Replace
    flushTime: 250ms
    maxDrainTime: 2h
`;

function error(text: string): FleetSpecError {
  try {
    parseFleetFile(text, 'fleet.yaml');
  } catch (e) {
    if (e instanceof FleetSpecError) return e;
    throw e;
  }
  throw new Error('expected a FleetSpecError');
}

describe('parseFleetFile', () => {
  it('parses a fleet and fills defaults', () => {
    const [fleet] = parseFleetFile(good, 'fleet.yaml');
    expect(fleet).toEqual({
      name: 'local',
      replicas: 2,
      region: 'local',
      scheduling: 'Packed',
      template: { labels: { gpu: 'none' }, command: [], env: { SMELTER_OUTPUT_FRAMERATE: '25' } },
      drain: { onRelease: 'Replace', flushTimeMs: 250, maxDrainTimeMs: 7_200_000 },
      health: {
        startupTimeoutMs: 60_000,
        periodMs: 500,
        failureThreshold: 3,
        readiness: 'Smelter',
        leaseTimeoutMs: 3000,
        sdkHealthTimeoutMs: 0,
      },
    });
  });

  it('names file, line and field of a bad value', () => {
    const e = error(good.replace('replicas: 2', 'replicas: three'));
    expect(e.path).toBe('spec.replicas');
    expect(e.line).toBe(6);
    expect(e.message).toBe('fleet.yaml:6:13: spec.replicas: must be an integer from 0 to 10000 (got "three")');
  });

  it.each([
    ['onRelease: Replace', 'onRelease: Keep', 'spec.drain.onRelease', /one of Recycle, Replace/],
    ['flushTime: 250ms', 'flushTime: soon', 'spec.drain.flushTime', /duration/],
    ['kind: SmelterFleet', 'kind: Fleet', 'kind', /must be SmelterFleet/],
    ['name: local', 'name: Local_Fleet', 'metadata.name', /DNS label/],
    [
      'SMELTER_OUTPUT_FRAMERATE: "25"',
      'SMELTER_OUTPUT_FRAMERATE: 25',
      'spec.template.spec.env.SMELTER_OUTPUT_FRAMERATE',
      /quote numbers/,
    ],
    ['  replicas: 2', '  replicas: 2\n  replica: 3', 'spec.replica', /unknown field/],
  ])('rejects %s -> %s', (from, to, path, why) => {
    const e = error(good.replace(from, to));
    expect(e.path).toBe(path);
    expect(e.why).toMatch(why);
    expect(e.line).toBeGreaterThan(0);
  });

  it('reports invalid YAML with its position', () => {
    const e = error('spec: [unclosed');
    expect(e.message).toMatch(/^fleet\.yaml:1:\d+: invalid YAML/);
  });

  it('reads several fleets and refuses a duplicate name', () => {
    expect(
      parseFleetFile(`${good}---\n${good.replace('name: local', 'name: other')}`, 'f.yaml').map((f) => f.name),
    ).toEqual(['local', 'other']);
    expect(error(`${good}---\n${good}`).why).toMatch(/declared twice/);
  });

  it('refuses an empty file', () => {
    expect(error('').why).toMatch(/no fleet/);
  });
});

describe('parseDurationMs', () => {
  it.each([
    ['500ms', 500],
    ['2s', 2000],
    ['1.5m', 90_000],
    ['4h', 14_400_000],
    [250, 250],
    ['2 hours', undefined],
    [-1, undefined],
  ])('%s -> %s', (input, ms) => expect(parseDurationMs(input)).toBe(ms));
});
