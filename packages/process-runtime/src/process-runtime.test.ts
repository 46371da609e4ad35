import { afterEach, describe, expect, it } from '@jest/globals';
import type { ServerExit } from '@smelter-fleet/core';
import { alive } from '@smelter-fleet/testing';
import { ProcessRuntime } from './process-runtime.js';

// A stand-in server: prints its Smelter env, exits on SIGINT (code 0), ignores SIGTERM.
const SERVER = `
process.on('SIGTERM', () => console.log('sigterm ignored'));
process.on('SIGINT', () => process.exit(0));
console.log(JSON.stringify({ api: process.env.SMELTER_API_PORT, whip: process.env.SMELTER_WHIP_WHEP_SERVER_PORT,
  rtmp: process.env.SMELTER_RTMP_SERVER_PORT, id: process.env.SMELTER_INSTANCE_ID, extra: process.env.EXTRA }));
setInterval(() => {}, 1000);
`;
// Ignores SIGINT too: only SIGKILL stops it.
const STUBBORN = `process.on('SIGINT', () => console.log('no')); console.log('up'); setInterval(() => {}, 1000);`;

function runtimeWithOutput() {
  const lines = new Map<string, string[]>();
  const waiters: (() => void)[] = [];
  const logger = {
    debug: (msg: string, f?: Record<string, unknown>) => {
      if (msg !== 'smelter output') return;
      const name = String(f?.server);
      lines.set(name, [...(lines.get(name) ?? []), String(f?.line)]);
      waiters.splice(0).forEach((w) => w());
    },
    info: () => {},
    warn: () => {},
    error: () => {},
    child(fields: Record<string, unknown>) {
      return {
        ...this,
        debug: (m: string, f?: Record<string, unknown>) => this.debug(m, { ...fields, ...f }),
        child: this.child,
      };
    },
  };
  const runtime = new ProcessRuntime({ defaultCommand: [process.execPath, '-e', SERVER], logger, stopGraceMs: 300 });
  const firstLine = async (name: string): Promise<string> => {
    while (!lines.get(name)?.length) await new Promise<void>((r) => waiters.push(r));
    return lines.get(name)![0]!;
  };
  return { runtime, firstLine };
}

describe('ProcessRuntime', () => {
  let runtime: ProcessRuntime;
  afterEach(async () => {
    await runtime.close();
  });

  it('starts servers with distinct ports and Smelter env', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const launched = await Promise.all(
      ['a', 'b', 'c', 'd'].map((name) => runtime.start({ name, fleet: 'f', command: [], env: { EXTRA: name } })),
    );
    const all = launched.flatMap((l) => Object.values(l.ports));
    expect(new Set(all).size).toBe(12);
    for (const l of launched) {
      const env = JSON.parse(await t.firstLine(l.name));
      expect(env).toEqual({
        api: String(l.ports.api),
        whip: String(l.ports.whip_whep),
        rtmp: String(l.ports.rtmp),
        id: l.name,
        extra: l.name,
      });
      expect(alive(l.pid!)).toBe(true);
    }
    expect(
      runtime
        .list()
        .map((l) => l.name)
        .sort(),
    ).toEqual(['a', 'b', 'c', 'd']);
  });

  it('stops with SIGINT and reports an expected exit', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const exits: ServerExit[] = [];
    runtime.onExit((e) => exits.push(e));
    const l = await runtime.start({ name: 'a', fleet: 'f', command: [], env: {} });
    await t.firstLine('a');
    await runtime.stop('a');
    expect(exits).toEqual([expect.objectContaining({ name: 'a', code: 0, signal: null, expected: true })]);
    expect(alive(l.pid!)).toBe(false);
    expect(runtime.list()).toEqual([]);
  });

  it('sends SIGKILL when SIGINT is not enough', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const exits: ServerExit[] = [];
    runtime.onExit((e) => exits.push(e));
    await runtime.start({ name: 'a', fleet: 'f', command: [process.execPath, '-e', STUBBORN], env: {} });
    await t.firstLine('a');
    await runtime.stop('a', { graceMs: 100 });
    expect(exits).toEqual([expect.objectContaining({ name: 'a', signal: 'SIGKILL', expected: true })]);
  });

  it('killAll SIGKILLs every server at once, synchronously', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const exits: ServerExit[] = [];
    const allGone = new Promise<void>((resolve) =>
      runtime.onExit((e) => {
        exits.push(e);
        if (exits.length === 2) resolve();
      }),
    );
    for (const name of ['a', 'b']) {
      await runtime.start({ name, fleet: 'f', command: [process.execPath, '-e', STUBBORN], env: {} });
      await t.firstLine(name);
    }
    runtime.killAll();
    await allGone;
    expect(exits.map((e) => [e.name, e.signal, e.expected]).sort()).toEqual([
      ['a', 'SIGKILL', true],
      ['b', 'SIGKILL', true],
    ]);
  });

  it('reports an unexpected exit with its code and last output', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const exited = new Promise<ServerExit>((resolve) => runtime.onExit(resolve));
    await runtime.start({
      name: 'a',
      fleet: 'f',
      command: [process.execPath, '-e', 'console.log("panicked at main"); process.exit(101)'],
      env: {},
    });
    expect(await exited).toEqual(
      expect.objectContaining({ name: 'a', code: 101, expected: false, lastOutput: ['panicked at main'] }),
    );
  });

  it('refuses a command that cannot start', async () => {
    runtime = new ProcessRuntime({ defaultCommand: ['/nonexistent/smelter'] });
    await expect(runtime.start({ name: 'a', fleet: 'f', command: [], env: {} })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    expect(runtime.list()).toEqual([]);
  });

  it('close stops every server', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    const launched = await Promise.all(
      ['a', 'b'].map((name) => runtime.start({ name, fleet: 'f', command: [], env: {} })),
    );
    await Promise.all(launched.map((l) => t.firstLine(l.name)));
    await runtime.close();
    for (const l of launched) expect(alive(l.pid!)).toBe(false);
  });

  it('kills the whole process group, not just the child', async () => {
    const t = runtimeWithOutput();
    runtime = t.runtime;
    // A wrapper that starts a grandchild and prints its pid.
    const wrapper = `const { spawn } = require('node:child_process');
      const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      console.log(String(g.pid)); setInterval(() => {}, 1000);`;
    await runtime.start({ name: 'w', fleet: 'f', command: [process.execPath, '-e', wrapper], env: {} });
    const grandchild = Number(await t.firstLine('w'));
    expect(alive(grandchild)).toBe(true);
    await runtime.stop('w', { graceMs: 200 });
    // The grandchild got the same SIGINT (default action: exit). Its death is no event we can
    // await (it is not our child, init reaps it), so poll, bounded.
    for (let i = 0; alive(grandchild) && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
    expect(alive(grandchild)).toBe(false);
  });
});
