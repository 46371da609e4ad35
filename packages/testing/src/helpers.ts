import { fileURLToPath } from 'node:url';
import type { ServerRecord, Store } from '@smelter-fleet/core';

/** Whether a process id is still running. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves with all servers once `ready` holds, re-checked on every store change (no polling). */
export async function untilServers(store: Store, ready: (servers: ServerRecord[]) => boolean): Promise<ServerRecord[]> {
  const ac = new AbortController();
  const changes = store.watch(ac.signal);
  try {
    let servers = await store.listServers();
    if (ready(servers)) return servers;
    for await (const _ of changes) {
      servers = await store.listServers();
      if (ready(servers)) return servers;
    }
    throw new Error('store closed before the condition held');
  } finally {
    ac.abort();
  }
}

/** The built CLI (`smelter-fleet`), for tests that run its subcommands as processes (e.g. `supervise`). */
export const cliBinPath = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
