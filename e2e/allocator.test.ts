import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { connectAllocator, startAllocatorServer, type AllocatorServer } from '@smelter-fleet/allocator';
import { FleetController } from '@smelter-fleet/controller';
import { linkToken } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { ProcessRuntime } from '@smelter-fleet/process-runtime';
import { emulatorMainPath } from '@smelter-fleet/smelter-emulator';
import { cliBinPath, fleetSpec, untilServers } from '@smelter-fleet/testing';
import type { ClientError } from 'nice-grpc';
import { Status } from 'nice-grpc';

jest.setTimeout(60_000);

// The allocator in front of a real fleet of emulator processes, driven by 50 concurrent clients.
describe('allocator over a fleet of emulators', () => {
  const store = new MemoryStore();
  let runtime: ProcessRuntime;
  const stop = new AbortController();
  let running: Promise<void>;
  let server: AllocatorServer;

  beforeAll(async () => {
    await store.putFleet(
      fleetSpec('emu', { replicas: 5, drain: { onRelease: 'Recycle', flushTimeMs: 0, maxDrainTimeMs: 60_000 } }),
    );
    server = await startAllocatorServer({ store, linkSecret: 'e2e' });
    runtime = new ProcessRuntime({
      defaultCommand: [process.execPath, emulatorMainPath],
      stopGraceMs: 2000,
      sidecar: {
        command: [process.execPath, cliBinPath, 'supervise', '--log-level', 'warn'],
        link: server.address,
        linkToken: (name) => linkToken('e2e', name),
      },
    });
    running = new FleetController({ store, runtime }).run(stop.signal);
    await untilReady(store, 5);
  });

  afterAll(async () => {
    stop.abort();
    await running;
    await server.close({ force: true });
    expect(runtime.list()).toEqual([]);
  });

  it('50 clients at once: 5 allocations on 5 distinct live emulators, 45 RESOURCE_EXHAUSTED', async () => {
    const clients = Array.from({ length: 50 }, () => connectAllocator(server.address));
    try {
      const results = await Promise.allSettled(
        clients.map((c, i) => c.allocation.allocate({ fleet: 'emu', compositionId: `burst-${i}` })),
      );
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.allocation!] : []));
      const codes = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as ClientError).code] : []));
      expect(ok).toHaveLength(5);
      expect(new Set(ok.map((a) => a.serverName)).size).toBe(5);
      expect(codes).toEqual(Array(45).fill(Status.RESOURCE_EXHAUSTED));
      for (const a of ok) {
        const status = (await (await fetch(`http://${a.address}:${a.ports.api}/status`)).json()) as {
          instance_id: string;
        };
        expect(status.instance_id).toBe(a.serverName);
      }
      await Promise.all(ok.map((a) => clients[0]!.allocation.release({ compositionId: a.compositionId })));
      await untilReady(store, 5);
    } finally {
      clients.forEach((c) => c.close());
    }
  });

  it('50 clients waiting for 5 recycled servers: all served, never two compositions on one server', async () => {
    const clients = Array.from({ length: 50 }, () => connectAllocator(server.address));
    const held = new Map<string, string>();
    const violations: string[] = [];
    try {
      await Promise.all(
        clients.map(async (c, i) => {
          const compositionId = `wait-${i}`;
          const { allocation } = await c.allocation.allocate({
            fleet: 'emu',
            compositionId,
            wait: { seconds: 50, nanos: 0 },
          });
          const name = allocation!.serverName;
          if (held.has(name)) violations.push(`${name} held by ${held.get(name)} and ${compositionId}`);
          held.set(name, compositionId);
          // A retry returns the same server.
          expect((await c.allocation.allocate({ fleet: 'emu', compositionId })).allocation!.serverName).toBe(name);
          held.delete(name);
          await c.allocation.release({ compositionId });
        }),
      );
      expect(violations).toEqual([]);
      await untilReady(store, 5);
    } finally {
      clients.forEach((c) => c.close());
    }
  });
});

const untilReady = (store: MemoryStore, n: number) =>
  untilServers(store, (servers) => servers.filter((s) => s.state === 'Ready').length === n);
