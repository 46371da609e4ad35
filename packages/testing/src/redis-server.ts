import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface RedisServerOptions {
  /** Append-only file with `appendfsync always`, so a restart loses no acknowledged write. Default false. */
  aof?: boolean;
  /** Port to listen on. Default: a free port. */
  port?: number;
  /** Data directory (kept across restart()). Default: a fresh temporary directory. */
  dir?: string;
}

/** A real `redis-server` child process on its own port and data directory, for tests and benchmarks. */
export class RedisServer {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly aof: boolean,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sf-redis-'));
    // A free port can be taken between the probe and redis' bind: try a few.
    for (let attempt = 0; ; attempt++) {
      const server = new RedisServer(options.port ?? (await freePort()), dir, options.aof ?? false);
      try {
        await server.launch();
        return server;
      } catch (err) {
        if (attempt >= 4 || options.port !== undefined) throw err;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Kills the server at once (SIGKILL: no shutdown save). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Starts the server again on the same port and data directory. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Kills the server and removes its data directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private launch(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    args.push('--appendonly', this.aof ? 'yes' : 'no', '--appendfsync', 'always');
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    return new Promise<void>((resolve, reject) => {
      const lines: string[] = [];
      const onExit = (code: number | null) =>
        reject(new Error(`redis-server exited (${code}) before it was ready:\n${lines.join('\n')}`));
      child.once('exit', onExit);
      child.once('error', reject);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (lines.length < 50) lines.push(line);
        if (/Ready to accept connections/.test(line)) {
          child.off('exit', onExit);
          resolve();
        }
      });
      child.stderr!.resume();
    });
  }
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
