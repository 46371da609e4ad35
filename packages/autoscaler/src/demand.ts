import { isFleetError, type AllocationRequest, type Store } from '@smelter-fleet/core';

/**
 * Wraps a store so that every allocation finding no Ready server (RESOURCE_EXHAUSTED) is reported: the demand
 * a fleet at zero, or exhausted, cannot see in its allocations (Agones #2145). The Store interface is unchanged;
 * give the wrapped store to the allocator.
 */
export function trackExhaustedAllocations(store: Store, onExhausted: (request: AllocationRequest) => void): Store {
  const allocate: Store['allocate'] = async (request) => {
    try {
      return await store.allocate(request);
    } catch (err) {
      if (isFleetError(err, 'RESOURCE_EXHAUSTED')) onExhausted(request);
      throw err;
    }
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'allocate') return allocate;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
