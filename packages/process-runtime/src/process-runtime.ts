import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import {
  FleetError,
  SIDECAR_ENV,
  silentLogger,
  type LaunchedServer,
  type Logger,
  type Runtime,
  type ServerExit,
  type ServerLaunch,
} from '@smelter-fleet/core';
import { PortPool } from './ports.js';

export interface ProcessRuntimeOptions {
  /** argv run when a launch names no command: $SMELTER_PATH, or the emulator. Required. */
  defaultCommand: readonly string[];
  /** Interface the servers are reached on, and bound to. Default '127.0.0.1'. */
  address?: string;
  /** Grace between SIGINT and SIGKILL when stopping, ms. Default 5000 (as smelter-node does). */
  stopGraceMs?: number;
  /** Environment every server starts with (Smelter's own variables are set per server on top). Default: none. */
  env?: Readonly<Record<string, string>>;
  /**
   * Run each server under its sidecar (`smelter-fleet supervise`): `command` is the supervise argv
   * (the Smelter command follows `--`), `link` the fleet link address, `linkToken` the token per server.
   * Without it, Smelter runs bare (benchmarks, tests of the runtime itself).
   */
  sidecar?: { command: readonly string[]; link: string; linkToken: (serverName: string) => string };
  logger?: Logger;
}

interface Running {
  launched: LaunchedServer;
  child: ChildProcess;
  exited: Promise<void>;
  stopping: boolean;
  lastLines: string[];
}

/** Runs each Smelter server as a local child process with its own ports. */
export class ProcessRuntime implements Runtime {
  private readonly running = new Map<string, Running>();
  private readonly listeners = new Set<(exit: ServerExit) => void>();
  private readonly ports: PortPool;
  private readonly address: string;
  private readonly stopGraceMs: number;
  private readonly logger: Logger;
  private readonly node = hostname();

  constructor(private readonly options: ProcessRuntimeOptions) {
    this.address = options.address ?? '127.0.0.1';
    this.stopGraceMs = options.stopGraceMs ?? 5000;
    this.logger = options.logger ?? silentLogger;
    this.ports = new PortPool(this.address);
  }

  async start(launch: ServerLaunch, signal?: AbortSignal): Promise<LaunchedServer> {
    signal?.throwIfAborted();
    if (this.running.has(launch.name))
      throw new FleetError('ALREADY_EXISTS', `server "${launch.name}" is already running`);
    const smelter = launch.command.length > 0 ? launch.command : this.options.defaultCommand;
    if (smelter.length === 0) throw new FleetError('INVALID_ARGUMENT', 'no Smelter command configured');
    const sidecar = this.options.sidecar;
    const taken = await this.ports.take(sidecar ? 5 : 3);
    const [api, whipWhep, rtmp, sdkGrpc, sdkHttp] = taken as [number, number, number, number, number];
    const ports = { api, whip_whep: whipWhep, rtmp };
    const [command, ...args] = sidecar ? [...sidecar.command, '--', ...smelter] : smelter;
    const child = spawn(command!, args, {
      env: {
        ...this.options.env,
        ...launch.env,
        SMELTER_INSTANCE_ID: launch.name,
        SMELTER_API_PORT: String(api),
        SMELTER_WHIP_WHEP_SERVER_PORT: String(whipWhep),
        SMELTER_RTMP_SERVER_PORT: String(rtmp),
        SMELTER_EMULATOR_HOST: this.address,
        ...(sidecar && {
          [SIDECAR_ENV.name]: launch.name,
          [SIDECAR_ENV.link]: sidecar.link,
          [SIDECAR_ENV.linkToken]: sidecar.linkToken(launch.name),
          [SIDECAR_ENV.sdkGrpcPort]: String(sdkGrpc),
          [SIDECAR_ENV.sdkHttpPort]: String(sdkHttp),
        }),
      },
      // Own process group: a terminal's Ctrl-C reaches only the fleet, which then stops each server in order.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = this.logger.child({ server: launch.name });
    const entry: Running = {
      launched: { name: launch.name, address: this.address, node: this.node, ports, pid: child.pid },
      child,
      stopping: false,
      lastLines: [],
      exited: new Promise((resolve) => child.once('close', () => resolve())),
    };
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        entry.lastLines.push(line);
        if (entry.lastLines.length > 5) entry.lastLines.shift();
        log.debug('smelter output', { line });
      });
    }
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    child.once('exit', (code, sig) => {
      // Whatever the server left behind in its group (a supervised Smelter whose sidecar died) goes too.
      if (child.pid !== undefined)
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // group already empty
        }
      this.running.delete(launch.name);
      this.ports.give(taken);
      const exit: ServerExit = {
        name: launch.name,
        code,
        signal: sig,
        expected: entry.stopping,
        lastOutput: [...entry.lastLines],
      };
      (exit.expected ? log.debug : log.warn)('server exited', {
        code,
        signal: sig,
        lastOutput: entry.lastLines.at(-1),
      });
      for (const l of this.listeners) l(exit);
    });
    this.running.set(launch.name, entry);
    try {
      await spawned;
    } catch (err) {
      this.running.delete(launch.name);
      this.ports.give(taken);
      throw new FleetError('FAILED_PRECONDITION', `cannot start "${command}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    log.debug('server started', { pid: child.pid, ports });
    return { ...entry.launched, ports: { ...ports } };
  }

  async stop(name: string, options: { graceMs?: number } = {}): Promise<void> {
    const entry = this.running.get(name);
    if (!entry) return;
    entry.stopping = true;
    // Smelter handles only SIGINT; SIGTERM would be ignored.
    this.signal(entry, 'SIGINT');
    const graceMs = options.graceMs ?? this.stopGraceMs;
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.logger.warn('server did not stop after SIGINT; sending SIGKILL', { server: name, graceMs });
        this.signal(entry, 'SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([entry.exited, killed]);
    clearTimeout(timer);
    await entry.exited;
  }

  onExit(listener: (exit: ServerExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(): LaunchedServer[] {
    return [...this.running.values()].map((r) => structuredClone(r.launched));
  }

  async close(): Promise<void> {
    await Promise.all([...this.running.keys()].map((name) => this.stop(name)));
  }

  /** SIGKILLs every server at once, synchronously: for a process that is exiting now (no orphan left). */
  killAll(): void {
    for (const entry of this.running.values()) {
      entry.stopping = true;
      this.signal(entry, 'SIGKILL');
    }
  }

  private signal(entry: Running, sig: NodeJS.Signals): void {
    const pid = entry.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig); // the whole group, so a wrapper script's children go too
    } catch {
      try {
        entry.child.kill(sig);
      } catch {
        // already gone
      }
    }
  }
}
