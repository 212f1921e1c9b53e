import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { missingPgBouncer, PgBouncer } from './helpers/pgbouncer.js';
import { describeIfAble } from './helpers/run-registry.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Issue 6: PostgreSQL behind PgBouncer (transaction mode), a read pool, and retention.
const names = isolation('postgres_at_scale');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
afterAll(async () => {
  await sql.end();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const messages = () => sql(`${names.schema}.messages`);

// Needs the pgbouncer program (run as the current user); the read-pool and retention tests below do not.
describeIfAble('behind PgBouncer in transaction mode (preparedStatements: false)', missingPgBouncer(), () => {
  let bouncer: PgBouncer;
  beforeAll(async () => {
    bouncer = await PgBouncer.start(databaseUrl());
  });
  afterAll(() => bouncer?.stop());

  it('migrates once with several processes racing, and every operation works', async () => {
    const schema = `${names.schema}_pgb`;
    const adapters = [0, 1, 2, 3].map(() => new PostgresAdapter({ url: bouncer.url, schema, preparedStatements: false }));
    await Promise.all(adapters.map((a) => a.connect())); // the advisory lock serialises them through the pooler
    const versions = await sql`select version from ${sql(`${schema}.schema_migrations`)} order by version`;
    // Every shipped migration.
    expect(versions.map((v) => v.version)).toEqual(PostgresAdapter.migrations().map((m) => Number(m.file.slice(0, 3))));
    await Promise.all(adapters.map((a) => a.close()));

    for (const writeMode of ['write-through', 'write-behind'] as const) {
      const store = new TieredStore({
        logger: false,
        writeMode,
        redis: new RedisAdapter({ url: redisUrl(), keyPrefix: `${names.keyPrefix}${writeMode}` }),
        postgres: new PostgresAdapter({ url: bouncer.url, schema, preparedStatements: false }),
      });
      const user = `pgb_${writeMode}`;
      const written = await Promise.all(Array.from({ length: 50 }, (_, i) => store.addMemory(user, 'user', `m${i}`)));
      await store.setUserPhone(user, '+79991234567');
      await store.addEmailSubscriber(user);
      await store.syncNow();
      expect((await store.getHistory(user, { limit: 100 })).map((m) => m.id)).toEqual(written.map((m) => m.id).sort());
      expect(await store.getUserPhone(user)).toBe('+79991234567');
      expect(store.health().postgres).toBe('up');
      await store.close();
    }
    await cleanupPostgres(databaseUrl(), schema);
  });
});

describe('read and write pools', () => {
  it('reads go to readUrl, except reads that refill Redis, which see every committed write', async () => {
    const replica = await FaultProxy.start(databaseUrl()); // the same server, so we can watch the traffic
    const store = new TieredStore({
      logger: false,
      historyLimit: 5,
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), readUrl: replica.url(databaseUrl()), schema: names.schema }),
    });
    await store.addMemory('rp', 'user', 'one');
    await store.getHistory('rp'); // a miss that refills Redis: primary
    expect(replica.connections).toBe(0);
    await store.getHistory('rp', { limit: 50 }); // past the hot copy: the read pool
    expect(replica.connections).toBeGreaterThan(0);
    await replica.refuse();
    expect((await store.getHistory('rp')).map((m) => m.content)).toEqual(['one']); // Redis, untouched
    await store.close();
    await replica.close();
  });
});

describe('retention, enforced by the syncer in batches', () => {
  it('keeps the newest keepLast messages of each user written to, and drops messages older than maxAgeDays', async () => {
    const store = new TieredStore({
      logger: false,
      historyLimit: 5,
      retention: { keepLast: 8, maxAgeDays: 30 },
      syncBatchSize: 3,
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    for (const user of ['ret_a', 'ret_b']) for (let i = 0; i < 12; i++) await store.addMemory(user, 'user', `${user}${i}`);
    await store.addMemory('ret_c', 'user', 'young');
    // An old message, as if written 40 days ago.
    await sql`update ${messages()} set created_at = now() - interval '40 days' where user_id = 'ret_c'`;
    await store.addMemory('ret_c', 'user', 'fresh');
    await store.syncNow();
    const count = async (user: string) => Number((await sql`select count(*) from ${messages()} where user_id = ${user}`)[0]?.count);
    expect(await count('ret_a')).toBe(8);
    expect(await count('ret_b')).toBe(8);
    expect((await store.getHistory('ret_a', { limit: 100 })).map((m) => m.content)).toEqual(Array.from({ length: 8 }, (_, i) => `ret_a${i + 4}`));
    expect((await store.getHistory('ret_c', { limit: 100 })).map((m) => m.content)).toEqual(['fresh']);
    await store.close();
  });

  it('refuses a keepLast below historyLimit (Redis would show more than PostgreSQL keeps)', () => {
    expect(() => new TieredStore({ historyLimit: 50, retention: { keepLast: 10 } })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });
});
