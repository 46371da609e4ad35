export { FleetAutoscaler, type FleetAutoscalerOptions, type AutoscalerStatus } from './autoscaler.js';
export { callWebhook, type WebhookCallOptions } from './webhook.js';
export { trackExhaustedAllocations } from './demand.js';
export { SimClock } from './sim/sim-clock.js';
