import { backoffMs, SIDECAR_ENV } from '@smelter-fleet/core';
import { sdkV1 } from '@smelter-fleet/proto';
import { ClientError, createChannel, createClient, Status, type Channel } from 'nice-grpc';

export type Server = sdkV1.Server;

export interface SdkOptions {
  /** host:port of the sidecar's gRPC SDK. Default: from `env`, else `127.0.0.1:9357`. */
  address?: string;
  /**
   * Environment to read the sidecar's address from (SMELTER_FLEET_SDK_HOST, SMELTER_FLEET_SDK_GRPC_PORT,
   * which the sidecar sets for the process it supervises). Pass `process.env`; default: none.
   */
  env?: Record<string, string | undefined>;
  /**
   * How long a call keeps retrying while the sidecar is not reachable yet (it may start after your
   * code), ms. Default 30000. Each call's own `signal` can end it sooner.
   */
  waitForSidecarMs?: number;
}

export interface SdkCallOptions {
  signal?: AbortSignal;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

const unavailable = (err: unknown) => err instanceof ClientError && err.code === Status.UNAVAILABLE;

/**
 * The sidecar's SDK for code running beside Smelter: say Ready, keep health pings going, set labels
 * and annotations, watch the server (its composition, metadata and token arrive there), say the
 * composition is finished, ask for shutdown. Every call takes an AbortSignal; calls made before the
 * sidecar is up wait for it (bounded), streams reconnect.
 */
export class SmelterFleetSdk {
  private readonly channel: Channel;
  private readonly client: sdkV1.SDKClient;
  private readonly waitMs: number;

  constructor(options: SdkOptions = {}) {
    const env = options.env ?? {};
    const address =
      options.address ?? `${env[SIDECAR_ENV.sdkHost] || '127.0.0.1'}:${env[SIDECAR_ENV.sdkGrpcPort] || '9357'}`;
    this.channel = createChannel(address, undefined, {
      'grpc.initial_reconnect_backoff_ms': 50,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    this.client = createClient(sdkV1.SDKDefinition, this.channel);
    this.waitMs = options.waitForSidecarMs ?? 30_000;
  }

  /** Marks the server ready to be allocated (needed when the fleet's readiness is SdkReady). */
  async ready(options: SdkCallOptions = {}): Promise<void> {
    await this.call((signal) => this.client.ready({}, { signal }), options);
  }

  /** Drain (the running composition, if any, ends first), then stop the server. */
  async shutdown(reason = '', options: SdkCallOptions = {}): Promise<void> {
    await this.call((signal) => this.client.shutdown({ reason }, { signal }), options);
  }

  /** Sets `sdk.smelterfleet.dev/<key>` = `value` on the server (usable by allocation selectors). */
  async setLabel(key: string, value: string, options: SdkCallOptions = {}): Promise<void> {
    await this.call((signal) => this.client.setLabel({ key, value }, { signal }), options);
  }

  /** Sets annotation `sdk.smelterfleet.dev/<key>` = `value` on the server. */
  async setAnnotation(key: string, value: string, options: SdkCallOptions = {}): Promise<void> {
    await this.call((signal) => this.client.setAnnotation({ key, value }, { signal }), options);
  }

  /** Says the composition on this server is over (the server drains; recycled or replaced by policy). */
  async finishComposition(reason = '', options: SdkCallOptions = {}): Promise<void> {
    await this.call((signal) => this.client.finishComposition({ reason }, { signal }), options);
  }

  async getServer(options: SdkCallOptions = {}): Promise<Server> {
    const res = await this.call((signal) => this.client.getServer({}, { signal }), options);
    return res.server!;
  }

  /** The server now and on every change, until `signal` aborts; survives sidecar restarts. */
  async *watchServer(signal: AbortSignal): AsyncIterable<Server> {
    for (let attempt = 0; !signal.aborted;) {
      try {
        for await (const res of this.client.watchServer({}, { signal })) {
          attempt = 0;
          if (res.server) yield res.server;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!unavailable(err)) throw err;
      }
      await sleep(backoffMs(attempt++, { initialMs: 50, maxMs: 1000 }), signal).catch(() => undefined);
    }
  }

  /**
   * Sends a health ping every `intervalMs` until `signal` aborts, reopening the stream if the sidecar
   * restarts. Only matters when the fleet sets an SDK health timeout.
   */
  async keepHealthy(intervalMs: number, signal: AbortSignal): Promise<void> {
    for (let attempt = 0; !signal.aborted;) {
      const pings = (async function* () {
        while (!signal.aborted) {
          yield {};
          await sleep(intervalMs, signal).catch(() => undefined);
        }
      })();
      try {
        await this.client.health(pings, { signal });
        attempt = 0;
      } catch (err) {
        if (signal.aborted) return;
        if (!unavailable(err)) throw err;
      }
      await sleep(backoffMs(attempt++, { initialMs: 50, maxMs: 1000 }), signal).catch(() => undefined);
    }
  }

  close(): void {
    this.channel.close();
  }

  /** Retries while the sidecar is unreachable, up to `waitForSidecarMs`; other errors (INVALID_ARGUMENT...) at once. */
  private async call<T>(fn: (signal?: AbortSignal) => Promise<T>, { signal }: SdkCallOptions): Promise<T> {
    const deadline = Date.now() + this.waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(signal);
      } catch (err) {
        if (!unavailable(err) || Date.now() >= deadline || signal?.aborted) throw err;
        await sleep(Math.min(backoffMs(attempt, { initialMs: 50, maxMs: 1000 }), deadline - Date.now()), signal);
      }
    }
  }
}

/** A client of the sidecar's SDK. See SdkOptions for where it connects. */
export function connectSdk(options: SdkOptions = {}): SmelterFleetSdk {
  return new SmelterFleetSdk(options);
}
