import { MemoryAdapter } from '../src/index.js';
import { runAdapterContract } from '../src/testing.js';

// No server: the RAM tier as the system of record (the store's only tier, or its fallback).
runAdapterContract('MemoryAdapter', async () => ({ adapter: new MemoryAdapter() }), { groups: ['durable'] });
