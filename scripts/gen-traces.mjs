// Writes the example traces in deploy/traces/ from the seeded generator (deterministic: same files every run).
// Run after `pnpm build`: node scripts/gen-traces.mjs
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateTrace, parseGeneratorSpec, traceToJson } from '../packages/autoscaler/dist/index.js';

export const TRACES = {
  // Poisson background with sudden bursts of 10x the rate: the hard case (burst onsets cannot be foreseen).
  bursty: 'gen:seed=1,duration=2h,rate=2/m,burstRate=20/m,burstEvery=20m,burstLength=3m,medianLength=15m',
  // Steady Poisson arrivals, no bursts.
  steady: 'gen:seed=2,duration=2h,rate=4/m,burstEvery=0s,medianLength=15m',
  // A day compressed into 4 h: the rate swings from 0.5/min to 10/min and back, with small bursts.
  daily:
    'gen:seed=3,duration=4h,rate=0.5/m,peakRate=10/m,period=4h,burstRate=6/m,burstEvery=30m,burstLength=2m,medianLength=10m',
};

const dir = fileURLToPath(new URL('../deploy/traces/', import.meta.url));
for (const [name, spec] of Object.entries(TRACES)) {
  const trace = { ...generateTrace(parseGeneratorSpec(spec), name), generator: spec };
  writeFileSync(`${dir}${name}.json`, traceToJson(trace));
  console.log(`deploy/traces/${name}.json: ${trace.arrivals.length} arrivals over ${trace.durationMs / 60_000} min`);
}
