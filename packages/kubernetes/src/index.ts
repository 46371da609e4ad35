export * from './informer.js';
export * from './leader.js';
export * from './events.js';
export * from './status.js';
export * from './fleet-sync.js';
export * from './pod.js';
export * from './crds.js';
export * from './runtime.js';
