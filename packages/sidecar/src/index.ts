export { Sidecar, type SidecarOptions } from './sidecar.js';
export { runSidecar, type RunSidecarOptions, type RunningSidecar } from './run.js';
export { supervise, type SuperviseOptions, type Supervised } from './supervise.js';
export { startSdkServer, type SdkServer, type SdkServerOptions } from './sdk-server.js';
export { FleetLinkClient, type FleetLinkClientOptions } from './link-client.js';
export { nextHealth, initialHealth, type HealthState, type Observation, type SmelterHealth } from './health.js';
