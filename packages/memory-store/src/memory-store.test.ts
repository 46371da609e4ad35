import { storeContract } from '@smelter-fleet/testing';
import { MemoryStore } from './memory-store.js';

storeContract('MemoryStore', async (options) => new MemoryStore(options));
