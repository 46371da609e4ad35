export { FleetAutoscaler, webhooksOf, type FleetAutoscalerOptions, type AutoscalerStatus } from './autoscaler.js';
export { callWebhook, type WebhookCallOptions } from './webhook.js';
export { trackExhaustedAllocations } from './demand.js';
export { SimClock } from './sim/sim-clock.js';
export { SimRuntime, type SimRuntimeOptions } from './sim/sim-runtime.js';
export { oracleIdleMs } from './sim/oracle.js';
export { simulate, SimulateError, type SimulateOptions, type SimReport } from './sim/simulate.js';
export {
  DEFAULT_GENERATOR,
  generateTrace,
  parseGeneratorSpec,
  seededRandom,
  traceFromJson,
  traceToJson,
  TraceError,
  type Trace,
  type TraceArrival,
  type TraceGeneratorOptions,
} from './sim/trace.js';
