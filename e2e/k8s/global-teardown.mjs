// Repeats the skip banner at the end of the run, where it is seen.
export default function globalTeardown() {
  const skipped = process.env.SMELTER_FLEET_K8S_SKIP;
  if (skipped) console.warn(`\nk8s suite SKIPPED: ${skipped}\n`);
}
