import { allocationV1, fleetV1 } from '@smelter-fleet/proto';
import {
  ChannelCredentials,
  createChannel,
  createClientFactory,
  Metadata,
  type Channel,
  type ClientMiddleware,
} from 'nice-grpc';

export interface AllocatorClients {
  allocation: allocationV1.AllocationServiceClient;
  fleet: fleetV1.FleetServiceClient;
  channel: Channel;
  close(): void;
}

/** How a client authenticates to the allocator (see the README's Authentication section). */
export interface ConnectOptions {
  /** Bearer token sent as `authorization: Bearer <token>` on every call. Default: none. */
  token?: string;
  /**
   * TLS: `ca` (PEM) verifies the allocator's certificate (default: the system's roots); `cert` and `key` (PEM)
   * are the client certificate for mTLS. Default: plaintext.
   */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
}

function bearer(token: string): ClientMiddleware {
  return async function* (call, options) {
    const metadata = Metadata(options.metadata).set('authorization', `Bearer ${token}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

const buf = (v: string | Buffer | undefined) => (v === undefined ? null : Buffer.from(v));

/** Clients of a running allocator at host:port. */
export function connectAllocator(address: string, options: ConnectOptions = {}): AllocatorClients {
  const { tls, token } = options;
  const channel = tls
    ? createChannel(address, ChannelCredentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert)))
    : createChannel(address);
  const factory = token === undefined ? createClientFactory() : createClientFactory().use(bearer(token));
  return {
    allocation: factory.create(allocationV1.AllocationServiceDefinition, channel),
    fleet: factory.create(fleetV1.FleetServiceDefinition, channel),
    channel,
    close: () => channel.close(),
  };
}
