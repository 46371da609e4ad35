import type { Ports } from './types.js';

export interface ServerLaunch {
  name: string;
  fleet: string;
  /** Smelter command (argv). Empty: the runtime's default (SMELTER_PATH, or the emulator). */
  command: readonly string[];
  /** Extra environment for Smelter. */
  env: Readonly<Record<string, string>>;
}

export interface LaunchedServer {
  name: string;
  address: string;
  /** Host the server runs on. */
  node: string;
  ports: Ports;
  /** Host of Smelter's API port when it is not `address` (see ServerRecord.apiHost). */
  apiHost?: string;
  pid?: number;
}

export interface ServerExit {
  name: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the runtime was asked to stop it. */
  expected: boolean;
  /** Last lines the server printed, for the reason of an unexpected exit. */
  lastOutput: string[];
}

/** Where Smelter servers run: local child processes, Kubernetes pods, or nothing (benchmarks). */
export interface Runtime {
  /** Starts a server; resolves once it is launched (not yet healthy). */
  start(launch: ServerLaunch, signal?: AbortSignal): Promise<LaunchedServer>;
  /** Stops a server: SIGINT (Smelter ignores SIGTERM), then SIGKILL after `graceMs`. Resolves when it is gone. */
  stop(name: string, options?: { graceMs?: number }): Promise<void>;
  /** Called once for every server that exits, expected or not. Returns an unsubscribe function. */
  onExit(listener: (exit: ServerExit) => void): () => void;
  /** Servers this runtime currently runs. */
  list(): LaunchedServer[];
  /** Stops every server. */
  close(): Promise<void>;
}
