import { Metadata, type CallContext } from 'nice-grpc';

/**
 * A CallContext for calling a service implementation directly (the REST mirror does): no metadata in or
 * out; `signal` cancels the call as a gRPC cancellation would.
 */
export function directCallContext(signal: AbortSignal, peer = 'direct'): CallContext {
  return { metadata: Metadata(), peer, header: Metadata(), sendHeader() {}, trailer: Metadata(), signal };
}
