import { MemoryAdapter } from '../src/index.js';
import { runAdapterContract } from '../src/testing.js';

// The adapter contract on the RAM tier: no server needed (Redis and PostgreSQL: adapter-contract.test.ts).
runAdapterContract('MemoryAdapter', async () => ({ adapter: new MemoryAdapter() }));
