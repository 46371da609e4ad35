export * from './informer.js';
