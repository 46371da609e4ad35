import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, repoRoot, start, stopAll, tempFile, type Running } from './helpers.js';

jest.setTimeout(60_000);

interface AllocationJson {
  composition_id: string;
  token: string;
  gateway_url: string;
}

type Step = { step: string; result?: unknown; event?: { type: string }; message?: string; body?: unknown };

/** Runs the real client (e2e/smelter-client-driver.mjs, plain Node) against `url` with `token`. */
function drive(url: string, token: string): Promise<{ code: number; steps: Step[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, 'e2e/smelter-client-driver.mjs'), url, token],
      { timeout: 30_000 },
      (err, stdout, stderr) => {
        const steps = stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Step);
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, steps, stderr });
      },
    );
  });
}

/** The real Smelter TypeScript client through the gateway of a `smelter-fleet up` process, on an allocated emulator. */
describe('@swmansion/smelter-node through the gateway', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('drives a composition unchanged: init (status, reset, /ws), input, output, start, events, terminate', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sf-e2e-client-'));
    // Lenient health checks: a loaded test machine must not turn the allocated server Unhealthy mid-test.
    const fleetFile = tempFile(
      'fleet.yaml',
      `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata:
  name: client
spec:
  replicas: 1
  health:
    period: 1s
    failureThreshold: 10
`,
    );
    const up = start(['up', '-f', fleetFile, '--allocator-port', '0', '--gateway-port', '0', '--state-dir', stateDir]);
    running.push(up);
    const allocator = (await up.waitFor(/allocator listening on (\S+)/)).match[1]!;
    const gatewayBase = (await up.waitFor(/^gateway: (http:\/\/\S+)\/v1\/compositions\//)).match[1]!;
    await up.waitFor(/^status client: Ready 1$/);

    const client = ['--allocator', allocator, '--state-dir', stateDir];
    const allocated = await cli(['allocate', ...client, '--fleet', 'client', '--composition', 'live:1', '--json']);
    expect(allocated.stderr).toBe('');
    const a = JSON.parse(allocated.stdout) as AllocationJson;
    expect(a.gateway_url).toBe(`${gatewayBase}/v1/compositions/live%3A1/smelter`);
    const auth = { authorization: `Bearer ${a.token}` };

    // Without the token the gateway forwards nothing; a wrong one neither.
    expect((await fetch(`${a.gateway_url}/status`)).status).toBe(401);
    expect((await fetch(`${a.gateway_url}/status`, { headers: { authorization: 'Bearer x' } })).status).toBe(403);

    const run = await drive(a.gateway_url, a.token);
    expect(run.steps.find((s) => s.step === 'error')).toBeUndefined();
    expect(run.code).toBe(0);
    expect(run.steps.filter((s) => s.step !== 'event').map((s) => s.step)).toEqual([
      'init',
      'registerInput',
      'registerOutput',
      'start',
      'terminate',
    ]);
    expect(run.steps.find((s) => s.step === 'registerInput')?.result).toEqual({ port: 9700 });
    expect(run.steps.find((s) => s.step === 'registerOutput')?.result).toEqual({ port: 9701 });
    // Smelter's events reached the client over its /ws through the gateway.
    expect(run.steps.filter((s) => s.step === 'event').map((s) => s.event?.type)).toEqual([
      'VIDEO_INPUT_DELIVERED',
      'VIDEO_INPUT_PLAYING',
    ]);
    expect(run.steps.map((s) => JSON.stringify(s)).join('\n')).not.toContain(a.token);

    // What the client did is what the allocated Smelter holds (terminate() leaves outputs registered).
    const status = (await (await fetch(`${a.gateway_url}/status`, { headers: auth })).json()) as {
      inputs: unknown[];
      outputs: unknown[];
    };
    expect(status.inputs).toEqual([{ input_id: 'cam', input_type: 'rtp_stream' }]);
    expect(status.outputs).toEqual([{ output_id: 'program', output_type: 'rtp_stream' }]);

    // Released: the same token is refused at once.
    const released = await cli(['release', ...client, '--composition', 'live:1']);
    expect(released.code).toBe(0);
    expect((await fetch(`${a.gateway_url}/status`, { headers: auth })).status).toBe(403);
  });
});
