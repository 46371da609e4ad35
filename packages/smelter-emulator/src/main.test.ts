import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { emulatorMainPath } from './index.js';

/** The emulator as a real child process, with its JSON log lines awaitable. */
function run(env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [emulatorMainPath], {
    env: {
      ...process.env,
      SMELTER_API_PORT: '0',
      SMELTER_WHIP_WHEP_SERVER_PORT: '0',
      SMELTER_RTMP_SERVER_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(JSON.parse(l) as Record<string, unknown>);
    waiters.splice(0).forEach((w) => w());
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const line = async (msg: RegExp) => {
    for (;;) {
      const found = lines.find((l) => msg.test(String(l.msg)));
      if (found) return found;
      if (child.exitCode !== null) throw new Error(`exited before ${msg}: ${JSON.stringify(lines)}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { child, lines, line, exited };
}

describe('emulator process (main.ts)', () => {
  it('says it is an emulator, ignores SIGTERM like Smelter, and exits on SIGINT', async () => {
    const p = run({ SMELTER_INSTANCE_ID: 'emu-1' });
    expect(await p.line(/EMULATOR/)).toMatchObject({ instance_id: 'emu-1' });
    const { api_port } = await p.line(/^listening$/);
    p.child.kill('SIGTERM');
    await p.line(/SIGTERM ignored/);
    expect((await fetch(`http://127.0.0.1:${String(api_port)}/status`)).status).toBe(200);
    p.child.kill('SIGINT');
    expect(await p.exited).toEqual({ code: 0, signal: null });
  });

  it('crashes with a panic exit code when told to', async () => {
    const p = run({ SMELTER_EMULATOR_CRASH_AFTER_MS: '50' });
    expect(await p.exited).toEqual({ code: 101, signal: null });
    expect(p.lines.map((l) => l.msg)).toContain("thread 'main' panicked: emulated crash");
  });

  it('hangs when told to: connections accepted, nothing answered', async () => {
    const p = run();
    const { api_port } = await p.line(/^listening$/);
    const url = `http://127.0.0.1:${String(api_port)}`;
    expect((await fetch(`${url}/_emulator/hang`, { method: 'POST' })).status).toBe(200);
    await expect(fetch(`${url}/status`, { signal: AbortSignal.timeout(300) })).rejects.toThrow();
    p.child.kill('SIGINT');
    await p.exited;
  });

  it('binds its API only after the start delay', async () => {
    const p = run({ SMELTER_EMULATOR_START_DELAY_MS: '200' });
    await p.line(/EMULATOR/);
    expect(p.lines.some((l) => l.msg === 'listening')).toBe(false);
    await p.line(/^listening$/);
    p.child.kill('SIGINT');
    await p.exited;
  });

  it('refuses a bad environment variable by name', async () => {
    const p = run({ SMELTER_API_PORT: 'eighty' });
    expect(await p.exited).toEqual({ code: 1, signal: null });
    expect(String(p.lines.at(-1)?.msg)).toMatch(/SMELTER_API_PORT="eighty"/);
  });
});
