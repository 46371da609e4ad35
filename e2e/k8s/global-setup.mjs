// Makes sure the control-plane binaries exist before any test file starts (scripts/k8s-bins.sh answers from its
// cache, or builds them from Go modules); without Go the suite is skipped, loudly. Plain ESM: jest loads a global
// setup outside its transform and module mapping.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export default function globalSetup() {
  const started = Date.now();
  const res = spawnSync('bash', ['scripts/k8s-bins.sh'], {
    cwd: repoRoot,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status === 3) {
    const reason = res.stderr.trim() || 'k8s-bins: go not found';
    process.env.SMELTER_FLEET_K8S_SKIP = reason;
    const bar = '#'.repeat(100);
    console.warn(
      `\n${bar}\n# SKIPPING the Kubernetes suite (e2e/k8s): ${reason}\n` +
        `# It needs a Go toolchain to build etcd, kube-apiserver, kwok, ... (scripts/k8s-bins.sh).\n${bar}\n`,
    );
    return;
  }
  if (res.status !== 0) {
    const tail = `${res.stdout}\n${res.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`scripts/k8s-bins.sh failed (exit ${res.status ?? res.signal}):\n${tail}`);
  }
  const binDir = res.stdout.trim().split('\n').pop();
  process.env.SMELTER_FLEET_K8S_BIN_DIR = binDir;
  const tookS = (Date.now() - started) / 1000;
  if (tookS > 5) console.log(`\nk8s: control-plane binaries built in ${tookS.toFixed(0)} s (${binDir})`);
}
