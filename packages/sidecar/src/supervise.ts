import { spawn } from 'node:child_process';
import type { Logger } from '@smelter-fleet/core';
import type { Sidecar } from './sidecar.js';

export interface SuperviseOptions {
  /** Smelter's argv. */
  command: readonly string[];
  /** Smelter's environment. */
  env: NodeJS.ProcessEnv;
  sidecar: Sidecar;
  /** Grace between SIGINT and SIGKILL, ms. Default 5000. */
  killGraceMs?: number;
  logger: Logger;
}

export interface Supervised {
  pid: number | undefined;
  /**
   * A stop request (SIGTERM, pod deletion): drain first (no new composition; wait for the running one
   * to end and flush, up to the fleet's max drain time), then SIGINT, then SIGKILL after the grace.
   */
  requestStop(reason: string): void;
  /** Stop now: SIGINT, then SIGKILL after the grace. */
  stopNow(): void;
  /** Resolves with Smelter's exit code (128 + signal number when killed). */
  exited: Promise<number>;
}

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/**
 * Runs Smelter as a child next to the sidecar (the `supervise` entrypoint for custom images, and each
 * server in local mode). Smelter ignores SIGTERM and handles only SIGINT (FACTS.md), so stop requests
 * are turned into drain-then-SIGINT here.
 */
export function supervise(options: SuperviseOptions): Supervised {
  const { sidecar, logger } = options;
  const [file, ...args] = options.command;
  if (!file) throw new Error('supervise: no Smelter command given (after --)');
  const child = spawn(file, args, { env: options.env, stdio: 'inherit' });
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;

  const exited = new Promise<number>((resolve) => {
    child.once('error', (err) => {
      sidecar.smelterExited(`cannot start ${file}: ${err.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(killTimer);
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      if (!stopping) {
        logger.warn('Smelter ended unexpectedly', { how });
        sidecar.smelterExited(`Smelter ${how}`);
      }
      resolve(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
    });
  });

  const stopNow = () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    stopping = true;
    // With a composition still live (max drain time passed, or stop now), its end is a failure the fleet must hear.
    if (sidecar.mayStop()) sidecar.smelterStopping('Smelter stopped (SIGINT)');
    child.kill('SIGINT');
    killTimer ??= setTimeout(() => {
      logger.warn('Smelter did not stop after SIGINT; sending SIGKILL');
      child.kill('SIGKILL');
    }, options.killGraceMs ?? 5000);
  };

  let stopRequested = false;
  const requestStop = (reason: string) => {
    if (stopRequested) return;
    stopRequested = true;
    sidecar.shutdown(reason);
    void (async () => {
      const ac = new AbortController();
      const limit = setTimeout(() => {
        logger.warn('max drain time passed with the composition still running; stopping Smelter', {
          maxDrainTimeMs: sidecar.linkConfig.maxDrainTimeMs,
        });
        ac.abort();
      }, sidecar.linkConfig.maxDrainTimeMs);
      void exited.then(() => ac.abort());
      try {
        if (!sidecar.mayStop()) {
          logger.info('stop requested: waiting for the composition to end', { reason });
          for await (const _ of sidecar.watchServer(ac.signal)) if (sidecar.mayStop()) break;
        }
      } finally {
        clearTimeout(limit);
        ac.abort();
      }
      stopNow();
    })();
  };

  return { pid: child.pid, requestStop, stopNow, exited };
}
