export { startAllocatorServer, type AllocatorServer, type AllocatorServerOptions } from './server.js';
export { connectAllocator, type AllocatorClients } from './client.js';
export { allocateWithWait } from './wait.js';
export { stateFromProto, type FleetRuntimeInfo } from './convert.js';
export { errorMiddleware } from './errors.js';
export { fleetApplyHandler, DEFAULT_APPLY_HANDLERS, type ApplyHandler } from './services.js';
