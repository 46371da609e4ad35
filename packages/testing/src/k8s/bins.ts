import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository's root (this file is packages/testing/{src,dist}/k8s/bins.*). */
export const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));

/** The control-plane binaries cannot be had on this machine (no Go toolchain to build them). */
export class K8sBinsUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'K8sBinsUnavailableError';
  }
}

/**
 * The directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and helm:
 * runs scripts/k8s-bins.sh, which answers at once from its cache and builds from Go modules only when the cache
 * is missing (minutes). Throws K8sBinsUnavailableError when Go is absent, Error when the build fails.
 */
export function ensureK8sBins(): string {
  const res = spawnSync('bash', ['scripts/k8s-bins.sh'], {
    cwd: repoRoot,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status === 3) throw new K8sBinsUnavailableError(res.stderr.trim() || 'k8s-bins: go not found');
  if (res.status !== 0) {
    const tail = `${res.stdout}\n${res.stderr}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`scripts/k8s-bins.sh failed (exit ${res.status ?? res.signal}):\n${tail}`);
  }
  const lines = res.stdout.trim().split('\n');
  const dir = lines[lines.length - 1];
  if (!dir) throw new Error('scripts/k8s-bins.sh printed no bin directory');
  return dir;
}
