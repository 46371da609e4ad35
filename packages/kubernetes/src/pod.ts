import type {
  V1Container,
  V1EnvVar,
  V1Node,
  V1OwnerReference,
  V1Pod,
  V1Probe,
  V1Volume,
} from '@kubernetes/client-node';
import {
  SIDECAR_ENV,
  TEMPLATE_HASH_LABEL,
  type FleetSpec,
  type KubernetesTemplate,
  type Ports,
} from '@smelter-fleet/core';

/** Labels every server pod carries. The state label follows the store (see PodLabeler). */
export const FLEET_LABEL = 'smelterfleet.dev/fleet';
export const SERVER_LABEL = 'smelterfleet.dev/server';
export const STATE_LABEL = 'smelterfleet.dev/state';
/** Set to "false" on Allocated pods so the cluster autoscaler never evicts a live composition. */
export const SAFE_TO_EVICT_ANNOTATION = 'cluster-autoscaler.kubernetes.io/safe-to-evict';
/** The Smelter image a Sidecar-mode fleet runs when its template names none. */
export const DEFAULT_SMELTER_IMAGE = 'ghcr.io/software-mansion/smelter:v0.6.0';
/** Which address a pod's allocations return (its fleet's addressType when it was created). */
export const ADDRESS_TYPE_ANNOTATION = 'smelterfleet.dev/address-type';
/** Key of the per-pod link token in the pod's link Secret. */
export const LINK_TOKEN_KEY = 'token';

/** Container ports of a pod that does not use the host network (Smelter's defaults, FACTS.md). */
export const CONTAINER_PORTS: Ports = { api: 8081, whip_whep: 9000, rtmp: 1935 };
export const SDK_PORTS = { grpc: 9357, http: 9358 } as const;
/** Kubernetes port names (IANA service names: no underscore). */
export const PORT_NAME: Record<keyof Ports, string> = { api: 'api', whip_whep: 'whip-whep', rtmp: 'rtmp' };
/** Shared between the containers of a Sidecar-mode pod: the sidecar's preStop marks it once Smelter may stop. */
const RUN_DIR = '/run/smelter-fleet';
const STOP_FILE = `${RUN_DIR}/stop`;

/** The template settings when a fleet gives none. */
export const DEFAULT_KUBERNETES_TEMPLATE: KubernetesTemplate = {
  mode: 'Sidecar',
  addressType: 'PodIP',
  portPolicy: 'None',
  hostNetwork: false,
  nodeSelector: {},
};

export interface PodTemplateOptions {
  /** Namespace of the pods. Required. */
  namespace: string;
  /** Image holding the `smelter-fleet` CLI (the sidecar). Required for Sidecar-mode fleets. */
  sidecarImage: string;
  /** argv of the sidecar container. Default `['smelter-fleet', 'sidecar']`. */
  sidecarCommand?: readonly string[];
  /** argv prefix that runs a Supervisor-mode Smelter command. Default `['smelter-fleet', 'supervise', '--']`. */
  superviseCommand?: readonly string[];
  /** Smelter image of Sidecar-mode fleets whose template names none. Default DEFAULT_SMELTER_IMAGE. */
  defaultSmelterImage?: string;
  /** host:port of the fleet link (the allocators' FleetLinkService) as pods reach it. Required. */
  linkAddress: string;
  /** Added to the fleet's drain limit (maxDrainTime + flushTime) for terminationGracePeriodSeconds, ms. Default 30000. */
  terminationMarginMs?: number;
  /** Readiness probe period, ms. Default 5000. */
  readinessPeriodMs?: number;
  /** Service account of the pods. Default: the namespace's default. */
  serviceAccountName?: string;
  /** Extra annotations on every pod (e.g. scrape settings). Default none. */
  podAnnotations?: Readonly<Record<string, string>>;
}

/** What one pod is built from. */
export interface PodInput {
  /** Server name: the pod's name. */
  name: string;
  fleet: FleetSpec;
  /** templateHash(fleet.template), for the template-hash label. */
  templateHash: string;
  /** Owner (the SmelterFleet resource), when known: deleting the fleet deletes its pods. */
  owner?: V1OwnerReference;
  /** Host ports picked for this pod (hostPortCount of them), when the fleet uses host ports. */
  hostPorts?: readonly number[];
}

export function kubernetesTemplate(fleet: FleetSpec): KubernetesTemplate {
  return fleet.template.kubernetes ?? DEFAULT_KUBERNETES_TEMPLATE;
}

/** Host ports a pod of this template needs: none, whip_whep + rtmp (Dynamic), or every port (hostNetwork). */
export function hostPortCount(k: KubernetesTemplate): number {
  if (k.hostNetwork) return 5; // api, whip_whep, rtmp, SDK gRPC, SDK HTTP: all on the node's interfaces
  return k.portPolicy === 'Dynamic' ? 2 : 0;
}

/** Name of the Secret holding a pod's link token (owned by the pod, so it goes with it). */
export function linkSecretName(server: string): string {
  return `${server}-link`;
}

/**
 * Picks host ports for a new pod, as Agones' Dynamic port policy does: the range is cut into slots of `count`
 * consecutive ports and the pod takes the slot fewest live pods touch (lowest first). Pods sharing a slot cannot share
 * a node; the scheduler's NodePorts filter keeps them apart, so each slot serves one pod per node. Empty when the
 * range holds no slot. `used`: the host ports of each live pod.
 */
export function pickHostPorts(
  used: Iterable<readonly number[]>,
  range: { min: number; max: number },
  count: number,
): number[] {
  const slots = count > 0 ? Math.floor((range.max - range.min + 1) / count) : 0;
  if (slots <= 0) return [];
  const users = new Array<number>(slots).fill(0);
  for (const ports of used) {
    const touched = new Set<number>();
    for (const port of ports) {
      const offset = port - range.min;
      if (offset >= 0 && offset < slots * count) touched.add(Math.floor(offset / count));
    }
    for (const slot of touched) users[slot]!++;
  }
  let best = 0;
  for (let i = 1; i < slots; i++) if (users[i]! < users[best]!) best = i;
  const first = range.min + best * count;
  return Array.from({ length: count }, (_, i) => first + i);
}

/** Seconds the kubelet gives a deleted pod: the fleet's drain limit plus a margin for the flush and the SIGINT. */
export function terminationGraceSeconds(fleet: FleetSpec, marginMs = 30_000): number {
  return Math.ceil((fleet.drain.maxDrainTimeMs + fleet.drain.flushTimeMs + marginMs) / 1000);
}

interface PodPorts {
  smelter: Ports;
  sdk: { grpc: number; http: number };
  /** Host port per Smelter port name, when it has one. */
  host: Partial<Ports>;
}

function portLayout(k: KubernetesTemplate, hostPorts: readonly number[] | undefined): PodPorts {
  const need = hostPortCount(k);
  if ((hostPorts?.length ?? 0) !== need)
    throw new Error(`a pod of this fleet needs ${need} host port(s), got ${hostPorts?.length ?? 0}`);
  if (k.hostNetwork) {
    const [api, whipWhep, rtmp, grpc, http] = hostPorts as [number, number, number, number, number];
    const smelter = { api, whip_whep: whipWhep, rtmp };
    return { smelter, sdk: { grpc, http }, host: smelter };
  }
  const sdk = { ...SDK_PORTS };
  if (need === 0) return { smelter: { ...CONTAINER_PORTS }, sdk, host: {} };
  const [whipWhep, rtmp] = hostPorts as [number, number];
  return { smelter: { ...CONTAINER_PORTS }, sdk, host: { whip_whep: whipWhep, rtmp } };
}

const env = (vars: Record<string, string>): V1EnvVar[] =>
  Object.entries(vars).map(([name, value]) => ({ name, value }));

function nodeScript(body: string): string[] {
  return ['node', '-e', body];
}

/** Readiness: the sidecar answers on loopback and reports the server serving (Ready, or holding a composition). */
function readinessProbe(sdkHttpPort: number, periodMs: number): V1Probe {
  const script =
    `fetch('http://127.0.0.1:${sdkHttpPort}/server').then((r) => r.json())` +
    `.then((b) => process.exit(['Ready', 'Allocated', 'Draining'].includes(b.server && b.server.state) ? 0 : 1),` +
    ` () => process.exit(1))`;
  const periodSeconds = Math.max(1, Math.round(periodMs / 1000));
  return { exec: { command: nodeScript(script) }, periodSeconds, timeoutSeconds: periodSeconds, failureThreshold: 1 };
}

/**
 * The sidecar's preStop: tell the fleet the server is leaving, wait while it holds a composition (the kubelet's grace
 * period bounds the wait), then mark the shared stop file, on which Smelter's own preStop sends it SIGINT.
 */
function sidecarPreStop(sdkHttpPort: number): string[] {
  const script = [
    `const u = 'http://127.0.0.1:${sdkHttpPort}';`,
    `const busy = (s) => s && (s.state === 'Allocated' || (s.state === 'Draining' && s.compositionId));`,
    `(async () => {`,
    `  await fetch(u + '/shutdown', { method: 'POST', headers: { 'content-type': 'application/json' },`,
    `    body: JSON.stringify({ reason: 'pod deleted' }) }).catch(() => {});`,
    `  for (;;) {`,
    `    let s;`,
    `    try { s = (await (await fetch(u + '/server')).json()).server; } catch { break; }`,
    `    if (!busy(s)) break;`,
    `    await new Promise((r) => setTimeout(r, 1000));`,
    `  }`,
    `  require('fs').writeFileSync('${STOP_FILE}', '');`,
    `})();`,
  ].join('\n');
  return nodeScript(script);
}

/**
 * Builds the pod of one server. Pure.
 *
 * Sidecar mode: the Smelter container (its image as published, run as PID 1) and the `smelter-fleet sidecar`
 * container share the pod's network (Smelter's API on 127.0.0.1) and a small emptyDir. Stopping: Smelter ignores
 * SIGTERM as PID 1 (FACTS.md), so each container gets a preStop. The sidecar's waits for the composition to end, then
 * writes the stop file; Smelter's waits for that file and sends its own PID 1 SIGINT (`kill` is a shell builtin, so
 * only `sh` is needed in the image). This was chosen over `shareProcessNamespace` + a signal from the sidecar: with a
 * shared PID namespace Smelter is no longer PID 1, so the kubelet's SIGTERM would kill it at once, mid-composition,
 * and signalling across containers needs matching users or CAP_KILL.
 *
 * Supervisor mode: one container, a custom image whose entrypoint is `smelter-fleet supervise -- <smelter>`: the
 * supervisor handles SIGTERM (waits for the composition, then SIGINTs Smelter), so no hook is needed.
 */
export function buildPod(input: PodInput, options: PodTemplateOptions): V1Pod {
  const { name, fleet } = input;
  const k = kubernetesTemplate(fleet);
  const ports = portLayout(k, input.hostPorts);
  const readinessPeriodMs = options.readinessPeriodMs ?? 5000;
  const labels = {
    ...fleet.template.labels,
    [FLEET_LABEL]: fleet.name,
    [SERVER_LABEL]: name,
    [STATE_LABEL]: 'Starting',
    [TEMPLATE_HASH_LABEL]: input.templateHash,
  };
  const smelterEnv = {
    ...fleet.template.env,
    SMELTER_INSTANCE_ID: name,
    SMELTER_API_PORT: String(ports.smelter.api),
    SMELTER_WHIP_WHEP_SERVER_PORT: String(ports.smelter.whip_whep),
    SMELTER_RTMP_SERVER_PORT: String(ports.smelter.rtmp),
  };
  const sidecarEnv: V1EnvVar[] = [
    ...env({
      [SIDECAR_ENV.name]: name,
      [SIDECAR_ENV.link]: options.linkAddress,
      [SIDECAR_ENV.smelterUrl]: `http://127.0.0.1:${ports.smelter.api}`,
      [SIDECAR_ENV.sdkGrpcPort]: String(ports.sdk.grpc),
      [SIDECAR_ENV.sdkHttpPort]: String(ports.sdk.http),
    }),
    {
      name: SIDECAR_ENV.linkToken,
      valueFrom: { secretKeyRef: { name: linkSecretName(name), key: LINK_TOKEN_KEY } },
    },
  ];
  const containerPorts = (Object.keys(PORT_NAME) as (keyof Ports)[]).map((p) => ({
    name: PORT_NAME[p],
    containerPort: ports.smelter[p],
    protocol: 'TCP',
    ...(ports.host[p] !== undefined && { hostPort: ports.host[p] }),
  }));
  if (k.hostNetwork)
    containerPorts.push(
      { name: 'sdk-grpc', containerPort: ports.sdk.grpc, protocol: 'TCP', hostPort: ports.sdk.grpc },
      { name: 'sdk-http', containerPort: ports.sdk.http, protocol: 'TCP', hostPort: ports.sdk.http },
    );
  const resources = {
    ...(Object.keys(fleet.template.resources?.requests ?? {}).length > 0 && {
      requests: { ...fleet.template.resources!.requests },
    }),
    ...(Object.keys(fleet.template.resources?.limits ?? {}).length > 0 && {
      limits: { ...fleet.template.resources!.limits },
    }),
  };
  const command = fleet.template.command;
  let containers: V1Container[];
  let volumes: V1Volume[] | undefined;
  if (k.mode === 'Supervisor') {
    containers = [
      {
        name: 'smelter',
        image: fleet.template.image,
        ...(command.length > 0 && {
          command: [...(options.superviseCommand ?? ['smelter-fleet', 'supervise', '--']), ...command],
        }),
        env: [...env(smelterEnv), ...sidecarEnv],
        ports: containerPorts,
        resources,
        readinessProbe: readinessProbe(ports.sdk.http, readinessPeriodMs),
      },
    ];
  } else {
    const mount = [{ name: 'smelter-fleet-run', mountPath: RUN_DIR }];
    volumes = [{ name: 'smelter-fleet-run', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }];
    containers = [
      {
        name: 'smelter',
        image: fleet.template.image ?? options.defaultSmelterImage ?? DEFAULT_SMELTER_IMAGE,
        ...(command.length > 0 && { command: [...command] }),
        env: env(smelterEnv),
        ports: containerPorts,
        resources,
        volumeMounts: mount,
        lifecycle: {
          preStop: {
            exec: { command: ['sh', '-c', `while [ ! -e ${STOP_FILE} ]; do sleep 1; done; kill -INT 1`] },
          },
        },
      },
      {
        name: 'sidecar',
        image: options.sidecarImage,
        command: [...(options.sidecarCommand ?? ['smelter-fleet', 'sidecar'])],
        env: sidecarEnv,
        resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
        volumeMounts: mount,
        readinessProbe: readinessProbe(ports.sdk.http, readinessPeriodMs),
        lifecycle: { preStop: { exec: { command: sidecarPreStop(ports.sdk.http) } } },
      },
    ];
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: options.namespace,
      labels,
      annotations: {
        ...options.podAnnotations,
        [SAFE_TO_EVICT_ANNOTATION]: 'true',
        [ADDRESS_TYPE_ANNOTATION]: k.addressType,
      },
      ...(input.owner && { ownerReferences: [input.owner] }),
    },
    spec: {
      containers,
      ...(volumes !== undefined && { volumes }),
      // A server that stops is replaced by the fleet, never restarted in place (its composition is gone).
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: terminationGraceSeconds(fleet, options.terminationMarginMs),
      enableServiceLinks: false,
      automountServiceAccountToken: false,
      ...(options.serviceAccountName && { serviceAccountName: options.serviceAccountName }),
      ...(Object.keys(k.nodeSelector).length > 0 && { nodeSelector: { ...k.nodeSelector } }),
      ...(k.hostNetwork && { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }),
    },
  };
}

/** The Smelter ports of a pod as its clients reach them: host ports where the pod has them, else container ports. */
export function podPorts(pod: V1Pod): Ports {
  const out: Ports = { ...CONTAINER_PORTS };
  const smelter = pod.spec?.containers.find((c) => c.name === 'smelter');
  for (const p of Object.keys(PORT_NAME) as (keyof Ports)[]) {
    const port = smelter?.ports?.find((cp) => cp.name === PORT_NAME[p]);
    if (port) out[p] = port.hostPort ?? port.containerPort;
  }
  return out;
}

/** Host ports a pod holds (for pickHostPorts). */
export function hostPortsOf(pod: V1Pod): number[] {
  const out: number[] = [];
  for (const c of pod.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.hostPort) out.push(p.hostPort);
  return out;
}

/**
 * The address an allocation returns for a pod: its node's ExternalIP (else InternalIP), the node's InternalIP, or the
 * pod IP. Undefined while unknown (not scheduled, no IP yet). Without the node object, the pod's hostIP stands in.
 */
export function podAddress(
  pod: V1Pod,
  addressType: KubernetesTemplate['addressType'],
  node?: V1Node,
): string | undefined {
  if (addressType === 'PodIP') return pod.status?.podIP || undefined;
  const addresses = node?.status?.addresses ?? [];
  const of = (type: string) => addresses.find((a) => a.type === type)?.address;
  const found = (addressType === 'ExternalIP' ? of('ExternalIP') : undefined) ?? of('InternalIP');
  return found || pod.status?.hostIP || undefined;
}
