import { allocationV1, fleetV1 } from '@smelter-fleet/proto';
import { createChannel, createClient, type Channel } from 'nice-grpc';

export interface AllocatorClients {
  allocation: allocationV1.AllocationServiceClient;
  fleet: fleetV1.FleetServiceClient;
  channel: Channel;
  close(): void;
}

/** Clients of a running allocator at host:port. */
export function connectAllocator(address: string): AllocatorClients {
  const channel = createChannel(address);
  return {
    allocation: createClient(allocationV1.AllocationServiceDefinition, channel),
    fleet: createClient(fleetV1.FleetServiceDefinition, channel),
    channel,
    close: () => channel.close(),
  };
}
