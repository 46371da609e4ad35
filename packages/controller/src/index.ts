export * from './controller.js';
export * from './metrics.js';
export * from './plan.js';
