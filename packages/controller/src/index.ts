export { FleetController, type FleetControllerOptions } from './controller.js';
export { httpSmelterApi, type SmelterApi } from './smelter-api.js';
