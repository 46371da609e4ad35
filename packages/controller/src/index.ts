export { FleetController, type FleetControllerOptions } from './controller.js';
