import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const bin = join(repoRoot, 'packages/cli/dist/bin.js');

/**
 * The API token every process of this test file shares: `up` reuses it (it is its state directory's
 * api-token, mode 0600), client commands send it by default, stand-alone allocators take `allocatorAuth`.
 */
export const stateDir = mkdtempSync(join(tmpdir(), 'smelter-fleet-e2e-state-'));
export const apiToken = randomBytes(24).toString('base64url');
export const apiTokenFile = join(stateDir, 'api-token');
writeFileSync(apiTokenFile, `e2e:${apiToken}\n`, { mode: 0o600 });
/** Caller-auth flags for `smelter-fleet allocator`: this file's token list. */
export const allocatorAuth = ['--auth-tokens', apiTokenFile];
const stateEnv = { SMELTER_FLEET_STATE_DIR: stateDir };

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `up` listens for its gateway on 8090 unless told otherwise: tests running side by side would collide, so every
 * `up` a test runs gets an ephemeral gateway port unless the test names one (as they all pass --allocator-port 0).
 */
function ownPorts(args: string[]): string[] {
  return args[0] === 'up' && !args.includes('--gateway-port') ? [...args, '--gateway-port', '0'] : args;
}

/** Runs one smelter-fleet command to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...ownPorts(args)],
      { env: { ...process.env, ...stateEnv, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A long-running smelter-fleet process whose output lines can be awaited. */
export class Running {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: (() => void)[] = [];

  constructor(readonly child: ChildProcess) {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.lines.push(line);
        this.waiters.splice(0).forEach((w) => w());
      });
    }
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => this.waiters.splice(0).forEach((w) => w()));
  }

  /**
   * Waits for a line (at index `from` or later) matching `pattern`; returns its match and index.
   * Gives up after `giveUpMs` with the output so far, so a failure says what was printed instead.
   */
  async waitFor(pattern: RegExp, from = 0, giveUpMs = 30_000): Promise<{ match: RegExpMatchArray; index: number }> {
    const deadline = Date.now() + giveUpMs;
    let timer: NodeJS.Timeout | undefined;
    for (;;) {
      if (Date.now() > deadline)
        throw new Error(`no line matching ${pattern} after ${giveUpMs} ms; output:\n${this.lines.join('\n')}`);
      for (let i = from; i < this.lines.length; i++) {
        const match = this.lines[i]!.match(pattern);
        if (match) return { match, index: i };
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`process exited before printing ${pattern}; output:\n${this.lines.join('\n')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()) + 1);
      });
      clearTimeout(timer);
    }
  }
}

export function start(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  return new Running(
    spawn(process.execPath, [bin, ...ownPorts(args)], {
      env: { ...process.env, ...stateEnv, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

export function tempFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'smelter-fleet-e2e-')), name);
  writeFileSync(path, text);
  return path;
}

export function fleetYaml(name: string, replicas: number, extra = ''): string {
  return `apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleet
metadata:
  name: ${name}
spec:
  replicas: ${replicas}
  drain:
    flushTime: 0s
  health:
    period: 100ms
${extra}`;
}

/** A SmelterFleetAutoscaler document (with its leading `---`); `policy` is indented under spec.policy. */
export function autoscalerYaml(name: string, fleet: string, policy: string): string {
  return `---
apiVersion: smelterfleet.dev/v1alpha1
kind: SmelterFleetAutoscaler
metadata:
  name: ${name}
spec:
  fleetName: ${fleet}
  behavior:
    scaleDownStabilization: 0s
  policy:
${policy}`;
}

/** Stops every process of `running` still alive, last started first, and waits for each; empties the list. */
export async function stopAll(running: Running[], signal: NodeJS.Signals = 'SIGINT'): Promise<void> {
  for (const r of running.splice(0).reverse()) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill(signal);
      await r.exited;
    }
  }
}

export { alive } from '@smelter-fleet/testing';
