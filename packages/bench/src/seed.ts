import type { Store } from '@smelter-fleet/core';

/** `count` Ready servers, registered without processes. */
export async function seed(target: Store, count: number): Promise<void> {
  for (let i = 0; i < count; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, count - i) }, async (_, j) => {
        const n = i + j;
        const name = `bench-${String(n).padStart(5, '0')}`;
        await target.addServer({
          name,
          fleet: 'bench',
          region: 'local',
          address: '127.0.0.1',
          ports: { api: 10000 + n, whip_whep: 20000 + n, rtmp: 30000 + n },
          labels: {},
          node: `node-${n % 10}`,
        });
        await target.updateServer(name, { event: 'Healthy' });
      }),
    );
  }
}
