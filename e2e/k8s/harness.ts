import { afterAll, beforeAll, describe } from '@jest/globals';
import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '@smelter-fleet/testing';

/** Why the k8s suite is skipped on this machine (set by global-setup.ts), or undefined. */
export const k8sSkipReason: string | undefined = process.env.SMELTER_FLEET_K8S_SKIP;

/** `describe`, or `describe.skip` with a warning when the control plane cannot run here (no Go toolchain). */
export const describeK8s: typeof describe = k8sSkipReason
  ? (((name: string, fn: () => void) => {
      console.warn(`SKIPPED (no control plane: ${k8sSkipReason}): ${name}`);
      describe.skip(name, fn);
    }) as typeof describe)
  : describe;

const keepLogs = process.env.SMELTER_FLEET_K8S_KEEP_LOGS === '1';

export interface TestCluster {
  cp: ControlPlane;
  /** client-node configuration for the admin user. */
  kubeConfig: KubeConfig;
  /** A namespace created for this test file. */
  namespace: string;
}

/** client-node configuration from a kubeconfig file. */
export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

/**
 * Starts a control plane for this test file in beforeAll (and stops it in afterAll), creates `nodes` kwok nodes
 * and a namespace. The returned object is filled in once beforeAll has run.
 */
export function useControlPlane(
  options: ControlPlaneOptions & { nodes?: number; namespace?: string } = {},
): TestCluster {
  const cluster = {} as TestCluster;
  beforeAll(async () => {
    const binDir = options.binDir ?? process.env.SMELTER_FLEET_K8S_BIN_DIR;
    cluster.cp = await startControlPlane({ ...options, ...(binDir ? { binDir } : {}) });
    cluster.kubeConfig = loadKubeConfig(cluster.cp.kubeconfigPath);
    cluster.namespace = options.namespace ?? 'test';
    await cluster.cp.rest.create('/api/v1/namespaces', { metadata: { name: cluster.namespace } });
    if (options.nodes) await cluster.cp.createNodes(options.nodes);
  }, 180_000);
  afterAll(async () => {
    // SMELTER_FLEET_K8S_KEEP_LOGS=1 keeps the components' logs of every file (their path is printed).
    await cluster.cp?.stop({ keepLogs });
  }, 60_000);
  return cluster;
}
