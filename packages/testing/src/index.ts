export * from './store-contract.js';
export * from './helpers.js';
export * from './redis-server.js';
