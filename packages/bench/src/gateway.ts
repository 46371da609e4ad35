// pnpm bench:gateway [requests] — what the gateway adds to a call to a composition's Smelter.
// A real `smelter-fleet up` process (gateway, allocator, one emulated server under its sidecar); this process
// calls `GET /status` and `POST /api/start` one at a time, alternating direct (the allocation's address and API
// port) and through the gateway (its gateway_url with the token), in the same run, over keep-alive connections.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { percentile } from './stats.js';

const REQUESTS = Number(process.argv[2] ?? 5000);
const WARMUP = 500;
const cliBin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

interface Target {
  name: string;
  base: string;
  headers: Record<string, string>;
  agent: Agent;
}

/** One request; resolves with its latency in ms (status and body checked). */
function timed(target: Target, method: 'GET' | 'POST', path: string, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(
      `${target.base}${path}`,
      {
        method,
        agent: target.agent,
        headers: { ...target.headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
      },
      (res) => {
        let size = 0;
        res.on('data', (c: Buffer) => (size += c.length));
        res.once('end', () => {
          if (res.statusCode !== 200 || size === 0)
            reject(new Error(`${target.name} ${method} ${path}: HTTP ${res.statusCode}`));
          else resolve(performance.now() - started);
        });
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** CPU time (user + system) a process has used so far, ms; undefined where /proc is missing. */
function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return undefined;
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}
const CLOCK_TICKS_PER_SECOND = 100;

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [cliBin, ...args], (err, stdout, stderr) =>
      err ? reject(new Error(`smelter-fleet ${args[0]}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sf-bench-gateway-'));
  const fleetFile = join(dir, 'fleet.yaml');
  writeFileSync(
    fleetFile,
    'apiVersion: smelterfleet.dev/v1alpha1\nkind: SmelterFleet\nmetadata:\n  name: bench\nspec:\n  replicas: 1\n',
  );
  const up = spawn(
    process.execPath,
    [cliBin, 'up', '-f', fleetFile, '--allocator-port', '0', '--gateway-port', '0', '--state-dir', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const ready = new Promise<string>((resolve, reject) => {
      let allocator = '';
      createInterface({ input: up.stdout! }).on('line', (line) => {
        allocator ||= /allocator listening on (\S+)/.exec(line)?.[1] ?? '';
        if (allocator && /^status bench: Ready 1$/.test(line)) resolve(allocator);
      });
      up.once('exit', (code) => reject(new Error(`smelter-fleet up exited (${code})`)));
    });
    const allocator = await ready;
    const allocation = JSON.parse(
      await run([
        'allocate',
        '--allocator',
        allocator,
        '--state-dir',
        dir,
        '--fleet',
        'bench',
        '--composition',
        'bench-1',
        '--json',
      ]),
    ) as { address: string; ports: { api: number }; token: string; gateway_url: string };

    const agent = () => new Agent({ keepAlive: true, maxSockets: 1 });
    const direct: Target = {
      name: 'direct',
      base: `http://${allocation.address}:${allocation.ports.api}`,
      headers: {},
      agent: agent(),
    };
    const gateway: Target = {
      name: 'gateway',
      base: allocation.gateway_url,
      headers: { authorization: `Bearer ${allocation.token}` },
      agent: agent(),
    };

    const calls = [
      { label: 'GET /status', method: 'GET' as const, path: '/status', body: undefined },
      { label: 'POST /api/start', method: 'POST' as const, path: '/api/start', body: '{}' },
    ];
    console.log(`gateway overhead, ${REQUESTS} sequential requests per target and call (after ${WARMUP} warm-up),`);
    console.log(`direct and through the gateway interleaved in one run; Node ${process.version}, loopback\n`);
    console.log('call              target     p50 ms   p99 ms   max ms');
    const verdicts: string[] = [];
    for (const call of calls) {
      const samples: Record<string, number[]> = { direct: [], gateway: [] };
      let cpuBefore: number | undefined;
      for (let i = 0; i < WARMUP + REQUESTS; i++) {
        if (i === WARMUP) cpuBefore = cpuMs(up.pid);
        // Alternate which goes first, so neither always meets a warmer cache.
        const order = i % 2 === 0 ? [direct, gateway] : [gateway, direct];
        for (const t of order) {
          const ms = await timed(t, call.method, call.path, call.body);
          if (i >= WARMUP) samples[t.name]!.push(ms);
        }
      }
      const stats: Record<string, { p50: number; p99: number; max: number }> = {};
      for (const [name, values] of Object.entries(samples)) {
        values.sort((a, b) => a - b);
        stats[name] = { p50: percentile(values, 50), p99: percentile(values, 99), max: values[values.length - 1]! };
        const s = stats[name]!;
        console.log(
          `${call.label.padEnd(18)}${name.padEnd(9)}${s.p50.toFixed(3).padStart(8)} ${s.p99.toFixed(3).padStart(8)} ${s.max.toFixed(3).padStart(8)}`,
        );
      }
      const cpuAfter = cpuMs(up.pid);
      const cpuPerCall =
        cpuBefore === undefined || cpuAfter === undefined
          ? ''
          : `; up process CPU ${(((cpuAfter - cpuBefore) / REQUESTS) * 1000).toFixed(0)} us per proxied call (all its work included)`;
      const p50 = stats.gateway!.p50 - stats.direct!.p50;
      const p99 = stats.gateway!.p99 - stats.direct!.p99;
      verdicts.push(
        `${call.label}: overhead p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms (target p99 <= 1 ms: ${p99 <= 1 ? 'met' : 'MISSED'})${cpuPerCall}`,
      );
    }
    console.log('');
    for (const v of verdicts) console.log(v);
    direct.agent.destroy();
    gateway.agent.destroy();
  } finally {
    up.kill('SIGINT');
    await new Promise((resolve) => (up.exitCode !== null ? resolve(undefined) : up.once('exit', resolve)));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
