import { backoffMs, Channel, systemClock, type Clock, type Logger } from '@smelter-fleet/core';
import { linkV1 } from '@smelter-fleet/proto';
import { createChannel, createClient, Metadata } from 'nice-grpc';
import type { Sidecar } from './sidecar.js';

export interface FleetLinkClientOptions {
  /** host:port of the fleet's FleetLinkService (an allocator). */
  address: string;
  /** This server's link token. Secret: never log it. */
  token: string;
  sidecar: Sidecar;
  logger: Logger;
  clock?: Clock;
}

/**
 * Keeps the sidecar's link to the fleet open: registers with the sidecar's current report, sends each
 * new report and a heartbeat, and passes the fleet's view to the sidecar. A lost link is retried with
 * back-off; nothing on the Smelter side is touched meanwhile, so a running composition goes on.
 */
export class FleetLinkClient {
  private connected = false;

  constructor(private readonly options: FleetLinkClientOptions) {}

  get isConnected(): boolean {
    return this.connected;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { address, sidecar, logger } = this.options;
    const clock = this.options.clock ?? systemClock;
    // Keepalive pings find a dead connection even when nothing is sent.
    const channel = createChannel(address, undefined, {
      'grpc.keepalive_time_ms': 2000,
      'grpc.keepalive_timeout_ms': 2000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    const client = createClient(linkV1.FleetLinkServiceDefinition, channel);
    let attempt = 0;
    try {
      while (!signal.aborted) {
        const attemptAbort = new AbortController();
        const onAbort = () => attemptAbort.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        const requests = new Channel<linkV1.ConnectRequest>(attemptAbort.signal);
        requests.push({ register: { serverName: sidecar.serverName, report: sidecar.report() } });
        const offReport = sidecar.onReport((report) => requests.push({ report }));
        const heartbeat = setInterval(() => requests.push({ heartbeat: {} }), sidecar.linkConfig.heartbeatIntervalMs);
        try {
          const responses = client.connect(requests, {
            signal: attemptAbort.signal,
            metadata: Metadata({ authorization: `Bearer ${this.options.token}` }),
          });
          for await (const response of responses) {
            if (!this.connected) logger.info('fleet link up', { fleet: address });
            this.connected = true;
            attempt = 0;
            const before = sidecar.linkConfig.heartbeatIntervalMs;
            sidecar.setView(response.server, response.config);
            if (sidecar.linkConfig.heartbeatIntervalMs !== before) heartbeat.refresh();
          }
          throw new Error('the fleet closed the link');
        } catch (err) {
          if (signal.aborted) break;
          logger.warn('fleet link lost; reconnecting', {
            fleet: address,
            error: String((err as Error).message ?? err),
          });
        } finally {
          this.connected = false;
          clearInterval(heartbeat);
          offReport();
          attemptAbort.abort();
          signal.removeEventListener('abort', onAbort);
        }
        await clock.sleep(backoffMs(attempt++, { initialMs: 100, maxMs: 1000 }), signal).catch(() => undefined);
      }
    } finally {
      channel.close();
    }
  }
}
