import { describe, expect, it } from '@jest/globals';
import type { V1Container, V1Node, V1Pod } from '@kubernetes/client-node';
import { fleetSpecFromObject, templateHash, type FleetSpec } from '@smelter-fleet/core';
import {
  buildPod,
  FLEET_LABEL,
  hostPortCount,
  hostPortsOf,
  kubernetesTemplate,
  linkSecretName,
  pickHostPorts,
  podAddress,
  podPorts,
  SERVER_LABEL,
  STATE_LABEL,
  terminationGraceSeconds,
  type PodTemplateOptions,
} from './pod.js';

const options: PodTemplateOptions = {
  namespace: 'media',
  sidecarImage: 'smelter-fleet:dev',
  linkAddress: 'smelter-fleet-allocator.media.svc:50052',
};

function fleet(templateSpec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): FleetSpec {
  return fleetSpecFromObject({
    apiVersion: 'smelterfleet.dev/v1alpha1',
    kind: 'SmelterFleet',
    metadata: { name: 'shows' },
    spec: {
      template: {
        metadata: { labels: { tier: 'gpu' } },
        spec: { env: { SMELTER_OUTPUT_FRAMERATE: '25' }, ...templateSpec },
      },
      drain: { maxDrainTime: '1h', flushTime: '5s' },
      ...extra,
    },
  });
}

function pod(f: FleetSpec, hostPorts?: number[]): V1Pod {
  return buildPod({ name: 'shows-ab12c', fleet: f, templateHash: templateHash(f.template), hostPorts }, options);
}

const container = (p: V1Pod, name: string): V1Container => {
  const c = p.spec!.containers.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
};
const envOf = (c: V1Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));

describe('buildPod, Sidecar mode', () => {
  const f = fleet({ resources: { requests: { cpu: '2' }, limits: { 'nvidia.com/gpu': '1' } } });
  const p = pod(f);

  it('labels the pod with fleet, server, state and template hash, plus the template labels', () => {
    expect(p.metadata!.name).toBe('shows-ab12c');
    expect(p.metadata!.namespace).toBe('media');
    expect(p.metadata!.labels).toEqual({
      tier: 'gpu',
      [FLEET_LABEL]: 'shows',
      [SERVER_LABEL]: 'shows-ab12c',
      [STATE_LABEL]: 'Starting',
      'smelterfleet.dev/template-hash': templateHash(f.template),
    });
  });

  it('runs the Smelter image beside the sidecar, ports on their defaults, API never on a host port', () => {
    expect(p.spec!.containers.map((c) => c.name)).toEqual(['smelter', 'sidecar']);
    const smelter = container(p, 'smelter');
    expect(smelter.image).toBe('ghcr.io/software-mansion/smelter:v0.6.0');
    expect(smelter.command).toBeUndefined(); // the image's own entrypoint
    expect(smelter.ports).toEqual([
      { name: 'api', containerPort: 8081, protocol: 'TCP' },
      { name: 'whip-whep', containerPort: 9000, protocol: 'TCP' },
      { name: 'rtmp', containerPort: 1935, protocol: 'TCP' },
    ]);
    expect(smelter.resources).toEqual({ requests: { cpu: '2' }, limits: { 'nvidia.com/gpu': '1' } });
    expect(envOf(smelter)).toEqual({
      SMELTER_OUTPUT_FRAMERATE: '25',
      SMELTER_INSTANCE_ID: 'shows-ab12c',
      SMELTER_API_PORT: '8081',
      SMELTER_WHIP_WHEP_SERVER_PORT: '9000',
      SMELTER_RTMP_SERVER_PORT: '1935',
    });
    expect(p.spec!.hostNetwork).toBeUndefined();
  });

  it('gives the sidecar the link, its token from the pod Secret, and Smelter on loopback', () => {
    const sidecar = container(p, 'sidecar');
    expect(sidecar.image).toBe('smelter-fleet:dev');
    expect(sidecar.command).toEqual(['smelter-fleet', 'sidecar']);
    expect(envOf(sidecar)).toEqual({
      SMELTER_FLEET_SERVER_NAME: 'shows-ab12c',
      SMELTER_FLEET_LINK: 'smelter-fleet-allocator.media.svc:50052',
      SMELTER_FLEET_SMELTER_URL: 'http://127.0.0.1:8081',
      SMELTER_FLEET_SDK_GRPC_PORT: '9357',
      SMELTER_FLEET_SDK_HTTP_PORT: '9358',
      SMELTER_FLEET_LINK_TOKEN: { secretKeyRef: { name: linkSecretName('shows-ab12c'), key: 'token' } },
    });
    // The token never sits in the pod spec, and Smelter's container does not get it.
    expect(JSON.stringify(container(p, 'smelter').env)).not.toContain('LINK_TOKEN');
  });

  it('stops Smelter with SIGINT once the sidecar says so, within the drain limit', () => {
    expect(p.spec!.restartPolicy).toBe('Never');
    expect(p.spec!.terminationGracePeriodSeconds).toBe(3600 + 5 + 30);
    expect(terminationGraceSeconds(f, 0)).toBe(3605);
    const smelterStop = container(p, 'smelter').lifecycle!.preStop!.exec!.command!;
    expect(smelterStop.slice(0, 2)).toEqual(['sh', '-c']);
    expect(smelterStop[2]).toContain('kill -INT 1');
    const sidecarStop = container(p, 'sidecar').lifecycle!.preStop!.exec!.command!;
    expect(sidecarStop.slice(0, 2)).toEqual(['node', '-e']);
    // The hook scripts are valid JavaScript, and the file one writes is the file the other waits for.
    expect(() => new Function('require', sidecarStop[2]!)).not.toThrow();
    const stopFile = /writeFileSync\('([^']+)'/.exec(sidecarStop[2]!)![1]!;
    expect(smelterStop[2]).toContain(`[ ! -e ${stopFile} ]`);
    expect(p.spec!.volumes).toEqual([{ name: 'smelter-fleet-run', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } }]);
    const probe = container(p, 'sidecar').readinessProbe!.exec!.command!;
    expect(() => new Function(probe[2]!)).not.toThrow();
    expect(probe[2]).toContain('127.0.0.1:9358/server');
  });

  it('takes the template image, command and node selector', () => {
    const q = pod(
      fleet({ image: 'my/smelter:1', command: ['/app/main_process'], kubernetes: { nodeSelector: { gpu: 't4' } } }),
    );
    expect(container(q, 'smelter').image).toBe('my/smelter:1');
    expect(container(q, 'smelter').command).toEqual(['/app/main_process']);
    expect(q.spec!.nodeSelector).toEqual({ gpu: 't4' });
  });

  it('sets an owner reference when given one', () => {
    const owner = {
      apiVersion: 'smelterfleet.dev/v1alpha1',
      kind: 'SmelterFleet',
      name: 'shows',
      uid: 'u-1',
      controller: true,
    };
    const q = buildPod({ name: 'shows-x', fleet: f, templateHash: 'h', owner }, options);
    expect(q.metadata!.ownerReferences).toEqual([owner]);
  });
});

describe('buildPod, host ports and modes', () => {
  it('Dynamic: whip_whep and rtmp on host ports, the API only on the pod', () => {
    const f = fleet({ kubernetes: { portPolicy: 'Dynamic' } });
    expect(hostPortCount(kubernetesTemplate(f))).toBe(2);
    const p = pod(f, [7010, 7011]);
    expect(container(p, 'smelter').ports).toEqual([
      { name: 'api', containerPort: 8081, protocol: 'TCP' },
      { name: 'whip-whep', containerPort: 9000, protocol: 'TCP', hostPort: 7010 },
      { name: 'rtmp', containerPort: 1935, protocol: 'TCP', hostPort: 7011 },
    ]);
    expect(podPorts(p)).toEqual({ api: 8081, whip_whep: 7010, rtmp: 7011 });
    expect(hostPortsOf(p)).toEqual([7010, 7011]);
    expect(() => pod(f)).toThrow('needs 2 host port(s), got 0');
  });

  it('hostNetwork: every port, the SDK included, from the host range', () => {
    const f = fleet({ kubernetes: { hostNetwork: true } });
    const p = pod(f, [7000, 7001, 7002, 7003, 7004]);
    expect(p.spec!.hostNetwork).toBe(true);
    expect(p.spec!.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(envOf(container(p, 'smelter'))).toMatchObject({
      SMELTER_API_PORT: '7000',
      SMELTER_WHIP_WHEP_SERVER_PORT: '7001',
      SMELTER_RTMP_SERVER_PORT: '7002',
    });
    expect(envOf(container(p, 'sidecar'))).toMatchObject({
      SMELTER_FLEET_SMELTER_URL: 'http://127.0.0.1:7000',
      SMELTER_FLEET_SDK_GRPC_PORT: '7003',
      SMELTER_FLEET_SDK_HTTP_PORT: '7004',
    });
    expect(hostPortsOf(p)).toEqual([7000, 7001, 7002, 7003, 7004]);
    expect(podPorts(p)).toEqual({ api: 7000, whip_whep: 7001, rtmp: 7002 });
  });

  it('Supervisor: one container running the Smelter command under smelter-fleet supervise', () => {
    const f = fleet({
      image: 'me/smelter-custom:2',
      command: ['/app/main_process'],
      kubernetes: { mode: 'Supervisor' },
    });
    const p = pod(f);
    expect(p.spec!.containers.map((c) => c.name)).toEqual(['smelter']);
    const c = container(p, 'smelter');
    expect(c.image).toBe('me/smelter-custom:2');
    expect(c.command).toEqual(['smelter-fleet', 'supervise', '--', '/app/main_process']);
    expect(c.lifecycle).toBeUndefined(); // supervise handles SIGTERM itself
    expect(envOf(c)).toMatchObject({ SMELTER_API_PORT: '8081', SMELTER_FLEET_SERVER_NAME: 'shows-ab12c' });
    expect(p.spec!.volumes).toBeUndefined();
    // Without a command, the custom image's entrypoint (supervise) runs.
    const bare = pod(fleet({ image: 'me/smelter-custom:2', kubernetes: { mode: 'Supervisor' } }));
    expect(container(bare, 'smelter').command).toBeUndefined();
  });
});

describe('pickHostPorts', () => {
  const range = { min: 7000, max: 7009 };

  it('takes the least used slot, lowest first, and reuses a slot once every slot is used', () => {
    expect(pickHostPorts([], range, 2)).toEqual([7000, 7001]);
    expect(pickHostPorts([[7000, 7001]], range, 2)).toEqual([7002, 7003]);
    const all = [0, 2, 4, 6, 8].map((o) => [7000 + o, 7001 + o]);
    expect(pickHostPorts(all, range, 2)).toEqual([7000, 7001]);
    expect(pickHostPorts([...all, [7000, 7001], [7002, 7003]], range, 2)).toEqual([7004, 7005]);
  });

  it('counts a pod once for each slot it touches, whatever its port count', () => {
    // A hostNetwork pod (5 ports) covers slots 0-2 of a 2-port layout.
    expect(pickHostPorts([[7000, 7001, 7002, 7003, 7004]], range, 2)).toEqual([7006, 7007]);
    expect(pickHostPorts([[6000, 9000]], range, 2)).toEqual([7000, 7001]); // outside the range
  });

  it('gives nothing when the range holds no slot', () => {
    expect(pickHostPorts([], { min: 7000, max: 7003 }, 5)).toEqual([]);
    expect(pickHostPorts([], range, 5)).toEqual([7000, 7001, 7002, 7003, 7004]);
  });
});

describe('podAddress', () => {
  const p: V1Pod = { status: { podIP: '10.0.0.7', hostIP: '192.168.1.2' } };
  const node = (addresses: { type: string; address: string }[]): V1Node => ({ status: { addresses } });

  it('gives the pod IP, or the node address by type with fallbacks', () => {
    const both = node([
      { type: 'InternalIP', address: '192.168.1.2' },
      { type: 'ExternalIP', address: '203.0.113.9' },
    ]);
    expect(podAddress(p, 'PodIP', both)).toBe('10.0.0.7');
    expect(podAddress(p, 'ExternalIP', both)).toBe('203.0.113.9');
    expect(podAddress(p, 'InternalIP', both)).toBe('192.168.1.2');
    expect(podAddress(p, 'ExternalIP', node([{ type: 'InternalIP', address: '192.168.1.3' }]))).toBe('192.168.1.3');
    expect(podAddress(p, 'ExternalIP')).toBe('192.168.1.2'); // node unknown: its hostIP
    expect(podAddress({}, 'PodIP')).toBeUndefined();
    expect(podAddress({ status: {} }, 'ExternalIP')).toBeUndefined();
  });
});
