import { describe, expect, it } from '@jest/globals';
import {
  DRAIN_REQUESTED_ANNOTATION,
  silentLogger,
  TEMPLATE_HASH_LABEL,
  templateHash,
  type FleetSpec,
} from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { linkV1 } from '@smelter-fleet/proto';
import { fleetSpec, newServer } from '@smelter-fleet/testing';
import { applyReport } from './link-service.js';

const report = (r: Partial<linkV1.SidecarReport>): linkV1.SidecarReport =>
  linkV1.SidecarReport.fromPartial({ health: linkV1.SmelterHealth.SMELTER_HEALTH_HEALTHY, ...r });

/** A server of fleet f that held composition c1, released and drained by its sidecar. */
async function drainedServer(
  fleet: FleetSpec,
  labels: Record<string, string>,
  annotations: Record<string, string> = {},
) {
  const store = new MemoryStore();
  await store.putFleet(fleet);
  await store.addServer(newServer('s1', 'f', { labels, annotations }));
  await store.updateServer('s1', { event: 'Healthy' });
  await store.allocate({ fleet: 'f', compositionId: 'c1', matchLabels: {}, metadata: {} });
  await store.release('c1');
  return store;
}

describe('applyReport: recycle or replace after a drain', () => {
  const fleet = fleetSpec('f', { drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 60_000 } });
  const current = { [TEMPLATE_HASH_LABEL]: templateHash(fleet.template) };
  const drained = report({ drainedCompositionId: 'c1', recycled: true });

  it('recycles a server of the current template', async () => {
    const store = await drainedServer(fleet, current);
    await applyReport(store, 's1', drained, silentLogger);
    expect(await store.getServer('s1')).toMatchObject({ state: 'Ready' });
  });

  it('stops an outdated server even when its sidecar reset Smelter', async () => {
    const store = await drainedServer(fleet, { [TEMPLATE_HASH_LABEL]: '0123456789' });
    await applyReport(store, 's1', drained, silentLogger);
    expect(await store.getServer('s1')).toMatchObject({ state: 'Shutdown', reason: 'drained' });
  });

  it('stops a server an operator drained', async () => {
    const store = await drainedServer(fleet, current, { [DRAIN_REQUESTED_ANNOTATION]: 'maintenance' });
    await applyReport(store, 's1', drained, silentLogger);
    expect(await store.getServer('s1')).toMatchObject({ state: 'Shutdown' });
  });
});

describe('applyReport: Ready only once the server is recorded as launched', () => {
  it('defers a healthy report while the address is unknown, and applies it later', async () => {
    const store = new MemoryStore();
    await store.putFleet(fleetSpec('f'));
    await store.addServer(newServer('s1', 'f', { address: '' }));
    expect(await applyReport(store, 's1', report({}), silentLogger)).toBe(false);
    expect((await store.getServer('s1'))!.state).toBe('Starting');
    await store.updateServer('s1', { address: '127.0.0.1' });
    expect(await applyReport(store, 's1', report({}), silentLogger)).toBe(true);
    expect((await store.getServer('s1'))!.state).toBe('Ready');
  });
});
