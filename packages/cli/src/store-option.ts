import { randomBytes } from 'node:crypto';
import { FleetError, type Logger, type Store } from '@smelter-fleet/core';
import { MemoryStore } from '@smelter-fleet/memory-store';
import { parseRedisUrl, RedisStore } from '@smelter-fleet/redis-store';
import { UsageError } from './args.js';
import { CommandError } from './client-commands.js';

/** An opened `--store`, with the fleet link secret every process of the installation shares. */
export interface OpenedStore {
  store: Store;
  /** `memory`, or the Redis URL without its password. */
  description: string;
  shared: boolean;
  /** The fleet link secret: the given one, else for Redis one generated once and kept there, else a fresh one. */
  linkSecret: string;
}

/**
 * Opens `--store memory|redis://...`. A bad value is a UsageError naming the flag; an unreachable
 * Redis is a CommandError (the store is UNAVAILABLE).
 */
export async function openStore(
  command: string,
  value: string,
  options: { logger: Logger; linkSecret: string | undefined },
): Promise<OpenedStore> {
  if (value === 'memory')
    return {
      store: new MemoryStore(),
      description: 'memory',
      shared: false,
      linkSecret: options.linkSecret ?? randomBytes(32).toString('base64url'),
    };
  let redacted: string;
  try {
    redacted = parseRedisUrl(value).redacted;
  } catch (err) {
    const why = err instanceof FleetError ? err.message.replace(/^store: /, '') : String(err);
    throw new UsageError(`${command}: --store: ${why} (use memory or a redis:// URL)`);
  }
  try {
    const store = await RedisStore.connect({ url: value, logger: options.logger });
    const linkSecret = options.linkSecret ?? (await store.sharedSecret('fleet-link'));
    return { store, description: redacted, shared: true, linkSecret };
  } catch (err) {
    throw new CommandError(`${command}: --store ${redacted}: ${(err as Error).message}`);
  }
}
