export { connectSdk, SmelterFleetSdk, type SdkCallOptions, type SdkOptions, type Server } from './client.js';
