import { fileURLToPath } from 'node:url';
import type { LogFields, Logger, ServerRecord, Store } from '@smelter-fleet/core';

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

export interface LogEntry {
  level: string;
  msg: string;
  fields: LogFields;
}

/** A logger that keeps what it is told, and can wait for a line to be logged (no polling). */
export function recordingLogger(): Logger & {
  entries: LogEntry[];
  /** The first entry (from index `from` on, default 0) with this message and matching fields, logged already or later. */
  waitFor(msg: string, match?: (fields: LogFields) => boolean, from?: number): Promise<LogEntry>;
} {
  const entries: LogEntry[] = [];
  const waiters = new Set<(e: LogEntry) => boolean>();
  const log =
    (level: string) =>
    (msg: string, fields: LogFields = {}) => {
      const entry = { level, msg, fields };
      entries.push(entry);
      for (const w of waiters) if (w(entry)) waiters.delete(w);
    };
  const logger = {
    entries,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: () => logger,
    waitFor: (msg: string, match: (fields: LogFields) => boolean = () => true, from = 0) =>
      new Promise<LogEntry>((resolve) => {
        const past = entries.slice(from).find((e) => e.msg === msg && match(e.fields));
        if (past) return resolve(past);
        waiters.add((e) => {
          if (e.msg !== msg || !match(e.fields)) return false;
          resolve(e);
          return true;
        });
      }),
  };
  return logger;
}
