export * from './store-contract.js';
export * from './helpers.js';
