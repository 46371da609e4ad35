import { describe, expect, it } from '@jest/globals';
import {
  fleetSpecFromObject,
  TEMPLATE_HASH_LABEL,
  templateHash,
  type ServerRecord,
  type ServerState,
} from '@smelter-fleet/core';
import { microTime } from './leader.js';
import { availableCondition, fleetCounts, fleetSelector, sameStatus, setCondition } from './status.js';

const fleet = fleetSpecFromObject({
  apiVersion: 'smelterfleet.dev/v1alpha1',
  kind: 'SmelterFleet',
  metadata: { name: 'f' },
  spec: { replicas: 4 },
});
const hash = templateHash(fleet.template);

let seq = 0;
function server(state: ServerState, templateHashLabel = hash): ServerRecord {
  seq++;
  return {
    name: `f-${seq}`,
    fleet: 'f',
    region: 'local',
    state,
    address: '10.0.0.1',
    ports: { api: 8081, whip_whep: 9000, rtmp: 1935 },
    labels: { [TEMPLATE_HASH_LABEL]: templateHashLabel },
    annotations: {},
    node: 'n',
    createdAt: 0,
    stateChangedAt: 0,
    version: 1,
  };
}

describe('fleetCounts', () => {
  it('counts every state but Shutdown as a replica, and Ready, Allocated, Draining and current ones apart', () => {
    const servers = [
      server('Starting'),
      server('Ready'),
      server('Ready', 'oldhash'),
      server('Allocated'),
      server('Draining', 'oldhash'),
      server('Unhealthy'),
      server('Shutdown'),
    ];
    expect(fleetCounts(servers, fleet)).toEqual({
      replicas: 6,
      readyReplicas: 2,
      allocatedReplicas: 1,
      drainingReplicas: 1,
      updatedReplicas: 4,
    });
  });

  it('counts no server as updated for a fleet that is gone', () => {
    expect(fleetCounts([server('Ready')], undefined)).toMatchObject({
      replicas: 1,
      readyReplicas: 1,
      updatedReplicas: 0,
    });
  });
});

describe('setCondition', () => {
  const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
  it('adds a condition, keeps lastTransitionTime while the status holds, moves it when the status changes', () => {
    const a = setCondition(undefined, { type: 'Accepted', status: 'True', reason: 'SpecApplied', message: 'ok' }, t0);
    expect(a).toEqual([
      {
        type: 'Accepted',
        status: 'True',
        reason: 'SpecApplied',
        message: 'ok',
        lastTransitionTime: '2026-01-01T12:00:00Z',
      },
    ]);
    const b = setCondition(a, { type: 'Accepted', status: 'True', reason: 'SpecApplied', message: 'again' }, t0 + 5000);
    expect(b[0]).toMatchObject({ message: 'again', lastTransitionTime: '2026-01-01T12:00:00Z' });
    const c = setCondition(b, { type: 'Accepted', status: 'False', reason: 'InvalidSpec', message: 'x' }, t0 + 9000);
    expect(c[0]).toMatchObject({ status: 'False', lastTransitionTime: '2026-01-01T12:00:09Z' });
    expect(a[0]!.message).toBe('ok'); // input untouched
  });

  it('keeps conditions of other types', () => {
    const a = setCondition(undefined, { type: 'Accepted', status: 'True', reason: 'r', message: 'm' }, t0);
    const b = setCondition(a, { type: 'Available', status: 'False', reason: 'r', message: 'm' }, t0);
    expect(b.map((c) => c.type)).toEqual(['Accepted', 'Available']);
  });
});

describe('availableCondition', () => {
  it('is True once Ready, Allocated and Draining servers reach the desired count', () => {
    const counts = { replicas: 4, readyReplicas: 1, allocatedReplicas: 1, drainingReplicas: 1, updatedReplicas: 4 };
    expect(availableCondition(counts, 4)).toMatchObject({ status: 'False', message: '3 of 4 desired servers up' });
    expect(availableCondition(counts, 3)).toMatchObject({ status: 'True', reason: 'ServersUp' });
  });
});

describe('sameStatus', () => {
  it('ignores key order and undefined fields, not values', () => {
    expect(sameStatus({ a: 1, b: { c: [1, 2] }, d: undefined }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
    expect(sameStatus({ a: 1 }, { a: 2 })).toBe(false);
    expect(sameStatus({ a: 1 }, undefined)).toBe(false);
  });
});

describe('fleetSelector and microTime', () => {
  it('selects the fleet label; writes MicroTime with microseconds', () => {
    expect(fleetSelector('gpu')).toBe('smelterfleet.dev/fleet=gpu');
    expect(microTime(Date.UTC(2026, 0, 1, 0, 0, 0, 123))).toBe('2026-01-01T00:00:00.123000Z');
  });
});
