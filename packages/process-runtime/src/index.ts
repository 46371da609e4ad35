export { ProcessRuntime, type ProcessRuntimeOptions } from './process-runtime.js';
export { PortPool, freePort } from './ports.js';
