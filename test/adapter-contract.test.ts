import { afterAll } from 'vitest';
import { PostgresAdapter, RedisAdapter } from '../src/index.js';
import { runAdapterContract } from '../src/testing.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// The contract on the servers; MemoryAdapter's run needs none (adapter-contract-memory.test.ts).
const { keyPrefix, schema } = isolation('adapter_contract');
afterAll(async () => {
  await cleanupRedis(redisUrl(), keyPrefix);
  await cleanupPostgres(databaseUrl(), schema);
});

runAdapterContract('PostgresAdapter', async () => {
  const adapter = new PostgresAdapter({ url: databaseUrl(), schema });
  return { adapter, cleanup: () => adapter.close() };
});

for (const role of ['durable', 'cache'] as const) {
  runAdapterContract(
    'RedisAdapter',
    async () => {
      const adapter = new RedisAdapter({ url: redisUrl(), keyPrefix: `${keyPrefix}${role}` });
      return { adapter, cleanup: () => adapter.close() };
    },
    { role },
  );
}
