export { RedisStore, type RedisStoreOptions } from './redis-store.js';
export { parseRedisUrl, type ParsedRedisUrl, type RedisTarget } from './config.js';
