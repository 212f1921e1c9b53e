import { afterAll } from 'vitest';
import { PostgresAdapter, RedisAdapter } from '../src/index.js';
import { runAdapterContract, type DeadLetterRecord } from '../src/testing.js';
import { redisContractOptions } from './helpers/redis-contract.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// The contract on the servers; MemoryAdapter's run needs none (adapter-contract-memory.test.ts).
const { keyPrefix, schema } = isolation('adapter_contract');
afterAll(async () => {
  await cleanupRedis(redisUrl(), keyPrefix);
  await cleanupPostgres(databaseUrl(), schema);
});

runAdapterContract(
  'PostgresAdapter',
  async () => {
    const adapter = new PostgresAdapter({ url: databaseUrl(), schema });
    return { adapter, cleanup: () => adapter.close() };
  },
  {
    groups: ['durable'],
    async deadLetters(adapter, user) {
      const sql = (adapter as PostgresAdapter).sql;
      const rows = await sql`select user_id, op_id, kind, entry, error from ${sql(`${schema}.dead_letters`)} where user_id = ${user} order by seq`;
      return rows.map((r): DeadLetterRecord => ({ user: r.user_id, id: r.op_id, kind: r.kind, entry: r.entry, error: r.error }));
    },
  },
);

// Every adapter gets a key prefix of its own: the journal tests count what is pending under it.
let n = 0;
const redis = (role: string) => async () => {
  const adapter = new RedisAdapter({ url: redisUrl(), keyPrefix: `${keyPrefix}${role}${n++}` });
  return { adapter, cleanup: () => adapter.close() };
};

runAdapterContract('RedisAdapter alone', redis('durable'), { groups: ['durable'] });
runAdapterContract('RedisAdapter in front of PostgreSQL', redis('cache'), {
  groups: ['cache', 'journal'],
  ...redisContractOptions,
});
