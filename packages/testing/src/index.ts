export * from './store-contract.js';
export * from './helpers.js';
export * from './redis-server.js';
export * from './history-checker.js';
export * from './certs.js';
export * from './k8s/pod-runner.js';
