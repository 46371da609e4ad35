export {
  startGateway,
  authorize,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type Gateway,
  type GatewayOptions,
  type GatewayTls,
} from './gateway.js';
export { parseProxyPath, bearerToken, tokenMatches, COMPOSITIONS_PREFIX, type ProxyPath } from './proxy-path.js';
export {
  restRouter,
  pendingRestRouter,
  restError,
  allocateRequestFromJson,
  allocationToJson,
  fleetToJson,
  type RestOptions,
  type RestCallerAuth,
} from './rest.js';
export { OPENAPI_DOCUMENT } from './openapi.js';
