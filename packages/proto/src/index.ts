export * as allocationV1 from './gen/smelterfleet/allocation/v1/allocation.js';
export * as fleetV1 from './gen/smelterfleet/fleet/v1/fleet.js';
export * as sdkV1 from './gen/smelterfleet/sdk/v1/sdk.js';
export * as linkV1 from './gen/smelterfleet/link/v1/link.js';
export { fileDescriptorSetBase64 } from './gen/descriptor.js';
