// Straight from the file: the package's index pulls in @jest/globals, which cannot load in a global setup.
import { ensureK8sBins, K8sBinsUnavailableError } from '../../packages/testing/src/k8s/bins.js';

/** Makes sure the control-plane binaries exist before any test file starts; without Go, the suite skips loudly. */
export default function globalSetup(): void {
  const started = Date.now();
  try {
    const binDir = ensureK8sBins();
    process.env.SMELTER_FLEET_K8S_BIN_DIR = binDir;
    const tookS = (Date.now() - started) / 1000;
    if (tookS > 5) console.log(`\nk8s: control-plane binaries built in ${tookS.toFixed(0)} s (${binDir})`);
  } catch (err) {
    if (!(err instanceof K8sBinsUnavailableError)) throw err;
    process.env.SMELTER_FLEET_K8S_SKIP = err.message;
    const bar = '#'.repeat(100);
    console.warn(
      `\n${bar}\n# SKIPPING the Kubernetes suite (e2e/k8s): ${err.message}\n` +
        `# Its tests need a Go toolchain to build etcd, kube-apiserver, kwok, ... (scripts/k8s-bins.sh).\n${bar}\n`,
    );
  }
}
