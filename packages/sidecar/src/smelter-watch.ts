import { request } from 'node:http';
import type { Logger, OutputEvent } from '@smelter-fleet/core';
import WebSocket from 'ws';
import type { Observation } from './health.js';

export interface SmelterCallResult {
  status: number;
  body: string;
}

/**
 * One HTTP call to Smelter on a fresh connection (no keep-alive), so a crash shows as a refused
 * connection at once instead of a stale pooled socket. Rejects with the socket error's code.
 */
export function callSmelter(
  url: string,
  path: string,
  options: { method?: 'GET' | 'POST'; body?: unknown; timeoutMs: number },
): Promise<SmelterCallResult> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = request(new URL(path, url), {
      method: options.method ?? 'GET',
      agent: false,
      headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      timeout: options.timeoutMs,
    });
    req.on('timeout', () =>
      req.destroy(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: 'TIMEOUT' })),
    );
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.end(payload);
  });
}

export interface SmelterWatchHandlers {
  /** The result of every poll. */
  observe(observation: Observation): void;
  /** Output ids `GET /status` listed, on every answered poll. */
  outputs(ids: string[]): void;
  /** OUTPUT_DONE / OUTPUT_ERROR from `/ws`. */
  event(event: OutputEvent): void;
  /** After every poll: a chance to act on time passing. */
  tick(): void;
}

export interface SmelterWatchOptions {
  /** Smelter's API base URL, e.g. `http://127.0.0.1:8081`. */
  url: string;
  /** Poll period, ms. */
  pollIntervalMs: number;
  /** A poll not answered in this long failed, ms. */
  requestTimeoutMs: number;
  logger: Logger;
}

/**
 * Watches one Smelter through `GET /status` polls and a `/ws` connection. A dropped socket makes it
 * poll at once, so a crash is seen as soon as the kernel closes the socket, not at the next poll.
 */
export class SmelterWatch {
  private ws: WebSocket | undefined;
  private wake: (() => void) | undefined;
  private woken = false;
  private answeredOnce = false;

  constructor(
    private options: SmelterWatchOptions,
    private readonly handlers: SmelterWatchHandlers,
  ) {}

  /** New timing (from the fleet's policy); takes effect at the next poll. */
  retime(pollIntervalMs: number, requestTimeoutMs: number): void {
    this.options = { ...this.options, pollIntervalMs, requestTimeoutMs };
  }

  pollNow(): void {
    this.woken = true;
    this.wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => this.pollNow(), { once: true });
    try {
      while (!signal.aborted) {
        await this.poll();
        this.handlers.tick();
        if (!this.woken)
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, this.options.pollIntervalMs);
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        this.wake = undefined;
        this.woken = false;
      }
    } finally {
      this.ws?.terminate();
    }
  }

  private async poll(): Promise<void> {
    const { url, requestTimeoutMs } = this.options;
    let observation: Observation;
    try {
      const res = await callSmelter(url, '/status', { timeoutMs: requestTimeoutMs });
      if (res.status !== 200) {
        observation = { kind: 'failed', reason: `GET /status answered ${res.status} ${errorCode(res.body)}`.trim() };
      } else {
        const status = JSON.parse(res.body) as { outputs?: { output_id?: unknown }[] };
        const ids = (status.outputs ?? []).map((o) => String(o.output_id));
        observation = { kind: 'answered' };
        this.handlers.outputs(ids);
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      observation =
        code === 'ECONNREFUSED'
          ? { kind: 'refused' }
          : {
              kind: 'failed',
              reason: `GET /status: ${code === 'TIMEOUT' ? (err as Error).message : (code ?? String(err))}`,
            };
    }
    this.handlers.observe(observation);
    if (observation.kind === 'answered') {
      if (!this.answeredOnce) this.options.logger.info('Smelter answers', { url });
      this.answeredOnce = true;
      if (!this.ws) this.connectEvents();
    }
  }

  private connectEvents(): void {
    const wsUrl = new URL('/ws', this.options.url);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(wsUrl);
    this.ws = ws;
    ws.on('message', (data) => {
      try {
        const event = JSON.parse(String(data)) as { type?: string; output_id?: string; severity?: string };
        if (event.type === 'OUTPUT_DONE' && event.output_id)
          this.handlers.event({ type: 'OUTPUT_DONE', output_id: event.output_id });
        else if (event.type === 'OUTPUT_ERROR' && event.output_id)
          this.handlers.event({ type: 'OUTPUT_ERROR', output_id: event.output_id, severity: event.severity ?? '' });
      } catch {
        this.options.logger.warn('unreadable /ws frame from Smelter');
      }
    });
    ws.on('open', () => this.options.logger.info('Smelter /ws connected'));
    ws.on('error', () => undefined); // 'close' follows
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      // Smelter never closes /ws itself: either it died, or events were lost. Poll now to tell which.
      this.options.logger.warn('Smelter /ws closed; checking Smelter now (events in between may be missed)');
      this.pollNow();
    });
  }
}

function errorCode(body: string): string {
  try {
    return String((JSON.parse(body) as { error_code?: unknown }).error_code ?? '');
  } catch {
    return '';
  }
}
