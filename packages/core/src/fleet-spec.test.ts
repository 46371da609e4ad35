import { describe, expect, it } from '@jest/globals';
import {
  FleetSpecError,
  parseDurationMs,
  parseFleetFile,
  parseManifest,
  resolveIntOrPercent,
  templateHash,
} from './fleet-spec.js';

const good = `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata:
  name: local
spec:
  replicas: 2
  template:
    metadata:
      labels:
        gpu: none
    spec:
      env:
        SMELTER_OUTPUT_FRAMERATE: "25"
  drain:
    onRelease: Replace
    flushTime: 250ms
    maxDrainTime: 2h
`;

function error(text: string): FleetSpecError {
  try {
    parseFleetFile(text, 'fleet.yaml');
  } catch (e) {
    if (e instanceof FleetSpecError) return e;
    throw e;
  }
  throw new Error('expected a FleetSpecError');
}

describe('parseFleetFile', () => {
  it('parses a fleet and fills defaults', () => {
    const [fleet] = parseFleetFile(good, 'fleet.yaml');
    expect(fleet).toEqual({
      name: 'local',
      replicas: 2,
      region: 'local',
      scheduling: 'Packed',
      template: {
        labels: { gpu: 'none' },
        command: [],
        env: { SMELTER_OUTPUT_FRAMERATE: '25' },
        resources: { requests: {}, limits: {} },
      },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      drain: { onRelease: 'Replace', flushTimeMs: 250, maxDrainTimeMs: 7_200_000 },
      health: {
        startupTimeoutMs: 60_000,
        periodMs: 500,
        failureThreshold: 3,
        readiness: 'Smelter',
        leaseTimeoutMs: 3000,
        sdkHealthTimeoutMs: 0,
      },
    });
  });

  it('names file, line and field of a bad value', () => {
    const e = error(good.replace('replicas: 2', 'replicas: three'));
    expect(e.path).toBe('spec.replicas');
    expect(e.line).toBe(6);
    expect(e.message).toBe('fleet.yaml:6:13: spec.replicas: must be an integer from 0 to 10000 (got "three")');
  });

  it.each([
    ['onRelease: Replace', 'onRelease: Keep', 'spec.drain.onRelease', /one of Recycle, Replace/],
    ['flushTime: 250ms', 'flushTime: soon', 'spec.drain.flushTime', /duration/],
    ['kind: SmelterFleet', 'kind: Fleet', 'kind', /must be SmelterFleet/],
    ['name: local', 'name: Local_Fleet', 'metadata.name', /DNS label/],
    [
      'SMELTER_OUTPUT_FRAMERATE: "25"',
      'SMELTER_OUTPUT_FRAMERATE: 25',
      'spec.template.spec.env.SMELTER_OUTPUT_FRAMERATE',
      /quote numbers/,
    ],
    ['  replicas: 2', '  replicas: 2\n  replica: 3', 'spec.replica', /unknown field/],
  ])('rejects %s -> %s', (from, to, path, why) => {
    const e = error(good.replace(from, to));
    expect(e.path).toBe(path);
    expect(e.why).toMatch(why);
    expect(e.line).toBeGreaterThan(0);
  });

  it('reports invalid YAML with its position', () => {
    const e = error('spec: [unclosed');
    expect(e.message).toMatch(/^fleet\.yaml:1:\d+: invalid YAML/);
  });

  it('reads several fleets and refuses a duplicate name', () => {
    expect(
      parseFleetFile(`${good}---\n${good.replace('name: local', 'name: other')}`, 'f.yaml').map((f) => f.name),
    ).toEqual(['local', 'other']);
    expect(error(`${good}---\n${good}`).why).toMatch(/declared twice/);
  });

  it('refuses an empty file', () => {
    expect(error('').why).toMatch(/no fleet/);
  });
});

describe('parseDurationMs', () => {
  it.each([
    ['500ms', 500],
    ['2s', 2000],
    ['1.5m', 90_000],
    ['4h', 14_400_000],
    [250, 250],
    ['2 hours', undefined],
    [-1, undefined],
  ])('%s -> %s', (input, ms) => expect(parseDurationMs(input)).toBe(ms));
});

describe('strategy, resources and template hash', () => {
  const withSpec = (extra: string) => good.replace('  replicas: 2\n', `  replicas: 2\n${extra}`);

  it('fills RollingUpdate 25%/25% and empty resources by default', () => {
    const [fleet] = parseFleetFile(good, 'fleet.yaml');
    expect(fleet!.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' },
    });
    expect(fleet!.template.resources).toEqual({ requests: {}, limits: {} });
  });

  it('parses a strategy and resources', () => {
    const [fleet] = parseFleetFile(
      withSpec(
        '  strategy:\n    type: RollingUpdate\n    rollingUpdate: { maxSurge: 2, maxUnavailable: 0 }\n' +
          '  template:\n    spec:\n      resources:\n        requests: { cpu: 2, memory: 4Gi }\n        limits: { nvidia.com/gpu: "1" }\n',
      ).replace(/\n {2}template:\n {4}metadata:[\s\S]*?"25"\n/, '\n'),
      'fleet.yaml',
    );
    expect(fleet!.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 2, maxUnavailable: 0 } });
    expect(fleet!.template.resources).toEqual({
      requests: { cpu: '2', memory: '4Gi' },
      limits: { 'nvidia.com/gpu': '1' },
    });
  });

  it.each([
    ['  strategy: { type: Rolling }\n', 'spec.strategy.type', 'must be one of RollingUpdate, Recreate (got "Rolling")'],
    [
      '  strategy: { rollingUpdate: { maxSurge: 150% } }\n',
      'spec.strategy.rollingUpdate.maxSurge',
      'must be a count (0 or more) or a percentage from 0% to 100% (got "150%")',
    ],
    [
      '  strategy: { rollingUpdate: { maxSurge: 0, maxUnavailable: 0% } }\n',
      'spec.strategy.rollingUpdate.maxUnavailable',
      'may not be 0 when maxSurge is 0 too',
    ],
    [
      '  strategy: { type: Recreate, rollingUpdate: { maxSurge: 1 } }\n',
      'spec.strategy.rollingUpdate',
      'only allowed with type RollingUpdate',
    ],
  ])('rejects %j naming the field', (extra, path, why) => {
    const e = error(withSpec(extra));
    expect(e.path).toBe(path);
    expect(e.why).toBe(why);
    expect(e.line).toBe(7);
  });

  it('rejects a bad quantity naming the field and line', () => {
    const e = error(
      good.replace('      env:\n', '      resources:\n        limits:\n          memory: lots\n      env:\n'),
    );
    expect(e.path).toBe('spec.template.spec.resources.limits.memory');
    expect(e.line).toBe(14);
    expect(e.why).toBe('must be a quantity like 2, 500m or 4Gi (got "lots")');
  });

  it('hashes the template stably: key order does not matter, any change does', () => {
    const [a] = parseFleetFile(good, 'fleet.yaml');
    const t = a!.template;
    const reordered = { env: { ...t.env }, command: [...t.command], labels: { ...t.labels }, resources: t.resources };
    expect(templateHash(reordered)).toBe(templateHash(t));
    expect(templateHash(t)).toMatch(/^[0-9a-f]{10}$/);
    const changed = [
      { ...t, env: { ...t.env, X: '1' } },
      { ...t, labels: { ...t.labels, gpu: 't4' } },
      { ...t, command: ['/bin/smelter'] },
      { ...t, resources: { requests: { cpu: '1' }, limits: {} } },
    ];
    for (const c of changed) expect(templateHash(c)).not.toBe(templateHash(t));
    // A missing resources block is the same as an empty one.
    expect(templateHash({ labels: t.labels, command: t.command, env: t.env })).toBe(templateHash(t));
  });

  it('resolves int-or-percent like Kubernetes: surge rounds up, unavailable down', () => {
    expect(resolveIntOrPercent('25%', 10, true)).toBe(3);
    expect(resolveIntOrPercent('25%', 10, false)).toBe(2);
    expect(resolveIntOrPercent('25%', 0, true)).toBe(0);
    expect(resolveIntOrPercent(4, 10, false)).toBe(4);
  });
});

describe('parseManifest', () => {
  it('parses documents by kind and names an unknown kind', () => {
    const objs = parseManifest(`${good}---\n${good.replace('name: local', 'name: other')}`, 'f.yaml');
    expect(objs.map((o) => [o.kind, o.name])).toEqual([
      ['SmelterFleet', 'local'],
      ['SmelterFleet', 'other'],
    ]);
    expect((objs[0]!.raw as { spec: { replicas: number } }).spec.replicas).toBe(2);
    try {
      parseManifest(`${good}---\nkind: Nope\n`, 'f.yaml');
      throw new Error('expected an error');
    } catch (e) {
      expect(e).toBeInstanceOf(FleetSpecError);
      expect((e as FleetSpecError).message).toBe(
        'f.yaml:19:7: [document 2] kind: must be one of SmelterFleet (got "Nope")',
      );
    }
  });

  it('accepts kinds a caller adds', () => {
    const objs = parseManifest('kind: Thing\nname: t1\n', 'f.yaml', {
      Thing: (doc) => ({ name: String((doc as { name: string }).name) }),
    });
    expect(objs).toEqual([{ kind: 'Thing', name: 't1', value: { name: 't1' }, raw: { kind: 'Thing', name: 't1' } }]);
  });
});

describe('Kubernetes template fields', () => {
  const withK8s = (block: string) => good.replace('      env:\n', `${block}      env:\n`);

  it('leaves image and kubernetes out when not written, so the hash does not change', () => {
    const [f] = parseFleetFile(good, 'fleet.yaml');
    expect(f!.template.image).toBeUndefined();
    expect(f!.template.kubernetes).toBeUndefined();
  });

  it('fills defaults: Sidecar, PodIP, no host ports', () => {
    const [f] = parseFleetFile(
      withK8s('      image: ghcr.io/software-mansion/smelter:v0.6.0\n      kubernetes: {}\n'),
      'f',
    );
    expect(f!.template.image).toBe('ghcr.io/software-mansion/smelter:v0.6.0');
    expect(f!.template.kubernetes).toEqual({
      mode: 'Sidecar',
      addressType: 'PodIP',
      portPolicy: 'None',
      hostNetwork: false,
      nodeSelector: {},
    });
  });

  it('host ports default the address to the node ExternalIP; hostNetwork implies Dynamic', () => {
    const [a] = parseFleetFile(withK8s('      kubernetes: { portPolicy: Dynamic }\n'), 'f');
    expect(a!.template.kubernetes).toMatchObject({ addressType: 'ExternalIP', portPolicy: 'Dynamic' });
    const [b] = parseFleetFile(
      withK8s(
        '      image: me/smelter\n      kubernetes: { hostNetwork: true, addressType: InternalIP, mode: Supervisor }\n',
      ),
      'f',
    );
    expect(b!.template.kubernetes).toMatchObject({
      addressType: 'InternalIP',
      portPolicy: 'Dynamic',
      hostNetwork: true,
      mode: 'Supervisor',
    });
  });

  it('names the field of a bad setting', () => {
    const cases: [string, string, string][] = [
      ['      kubernetes: { addressType: ExternalIP }\n', 'addressType', 'needs portPolicy Dynamic or hostNetwork'],
      ['      kubernetes: { hostNetwork: true, portPolicy: None }\n', 'portPolicy', 'must be Dynamic with hostNetwork'],
      ['      kubernetes: { hostNetwork: "yes" }\n', 'hostNetwork', 'must be true or false'],
      ['      kubernetes: { mode: Sidecars }\n', 'mode', 'must be one of Sidecar, Supervisor'],
      ['      kubernetes: { hostPort: 7000 }\n', 'hostPort', 'unknown field'],
      ['      kubernetes: { nodeSelector: { gpu: 1 } }\n', 'nodeSelector.gpu', 'must be a string'],
    ];
    for (const [block, field, why] of cases) {
      const e = error(withK8s(block));
      expect(e.path).toBe(`spec.template.spec.kubernetes.${field}`);
      expect(e.why).toContain(why);
    }
    const img = error(withK8s('      image: "smelter latest"\n'));
    expect(img.path).toBe('spec.template.spec.image');
    const custom = error(withK8s('      kubernetes: { mode: Supervisor }\n'));
    expect(custom.path).toBe('spec.template.spec.image');
    expect(custom.why).toContain('required with mode Supervisor');
  });

  it('a new image or pod setting is a new template (a rollout)', () => {
    const [f] = parseFleetFile(good, 'fleet.yaml');
    const t = f!.template;
    const k8s = {
      mode: 'Sidecar',
      addressType: 'PodIP',
      portPolicy: 'None',
      hostNetwork: false,
      nodeSelector: {},
    } as const;
    const hashes = new Set([
      templateHash(t),
      templateHash({ ...t, image: 'smelter:v1' }),
      templateHash({ ...t, image: 'smelter:v2' }),
      templateHash({ ...t, kubernetes: k8s }),
      templateHash({ ...t, kubernetes: { ...k8s, nodeSelector: { gpu: 't4' } } }),
    ]);
    expect(hashes.size).toBe(5);
  });
});
