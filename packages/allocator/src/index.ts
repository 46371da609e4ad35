export { startAllocatorServer, type AllocatorServer, type AllocatorServerOptions } from './server.js';
export { connectAllocator, type AllocatorClients, type ConnectOptions } from './client.js';
export {
  CallerAuth,
  expressAuth,
  firstToken,
  grpcAuthMiddleware,
  httpAuthRequest,
  parseTokenList,
  type AuthOptions,
  type AuthRequest,
  type AuthResult,
  type ReloadEvent,
} from './auth.js';
export { allocateWithWait } from './wait.js';
export { stateFromProto, type FleetRuntimeInfo } from './convert.js';
export { errorMiddleware, grpcStatusName } from './errors.js';
export { fleetApplyHandler, DEFAULT_APPLY_HANDLERS, type ApplyHandler } from './services.js';
export { allocationService, fleetService, type FleetServiceOptions } from './services.js';
export { directCallContext } from './call-context.js';
export {
  checkRegionPreference,
  DEFAULT_FORWARD_TIMEOUT_MS,
  FORWARDED_HEADER,
  orderRegions,
  RegionRouter,
  type RegionPreference,
  type RegionRoutingOptions,
  type RoutedAllocation,
} from './regions.js';
