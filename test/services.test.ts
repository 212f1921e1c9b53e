import { Redis } from 'ioredis';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
const iso = isolation('services self-test');

afterAll(async () => {
  await cleanupRedis(redisUrl(), iso.keyPrefix);
  await cleanupPostgres(databaseUrl(), iso.schema);
});

async function withRedis<T>(use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    return await use(client);
  } finally {
    client.disconnect();
  }
}

async function withSql<T>(use: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(databaseUrl(), { max: 1, onnotice: () => {} });
  try {
    return await use(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

describe('isolation', () => {
  it('gives distinct, valid names even for the same file name', () => {
    const a = isolation('Store: tiered / sync');
    const b = isolation('Store: tiered / sync');

    expect(a.schema).not.toBe(b.schema);
    expect(a.keyPrefix).not.toBe(b.keyPrefix);
    for (const { schema, keyPrefix } of [a, b]) {
      expect(schema).toMatch(IDENTIFIER);
      expect(schema).toMatch(/^t_store_tiered_sync_[0-9a-f]{8}$/);
      expect(keyPrefix.startsWith(schema)).toBe(true);
    }
  });

  it('keeps schema names within the 63-character identifier limit', () => {
    for (const name of ['x'.repeat(200), 'ÜÖÄ', '', '__a__'.repeat(30)]) {
      const { schema } = isolation(name);
      expect(schema.length).toBeLessThanOrEqual(63);
      expect(schema).toMatch(IDENTIFIER);
    }
  });

  it('gives names PostgreSQL accepts as they are', async () => {
    const { schema } = isolation('A name-with.odd chars!');
    await withSql(async (sql) => {
      await sql.unsafe(`create schema ${schema}`);
      await sql.unsafe(`drop schema ${schema}`);
    });
  });
});

describe('cleanupRedis', () => {
  it('deletes every key under the prefix, across many SCAN pages, and nothing else', async () => {
    const other = isolation('services neighbour');
    const keys = Array.from({ length: 1_200 }, (_, i) => `${iso.keyPrefix}k:${i}`);
    await withRedis(async (client) => {
      await client.mset(...keys.flatMap((key) => [key, '1']));
      await client.set(`${other.keyPrefix}keep`, '1');
    });

    await cleanupRedis(redisUrl(), iso.keyPrefix);

    await withRedis(async (client) => {
      expect(await client.exists(...keys)).toBe(0);
      expect(await client.get(`${other.keyPrefix}keep`)).toBe('1');
      await client.del(`${other.keyPrefix}keep`);
    });
  });

  it('treats glob characters in the prefix literally', async () => {
    const key = `${iso.keyPrefix}literal`;
    await withRedis((client) => client.set(key, '1'));

    await cleanupRedis(redisUrl(), `${iso.schema}?`);
    await cleanupRedis(redisUrl(), `${iso.schema}*`);

    expect(await withRedis((client) => client.get(key))).toBe('1');
  });

  it('refuses an empty prefix', async () => {
    await expect(cleanupRedis(redisUrl(), '')).rejects.toThrow(/empty keyPrefix/);
  });
});

describe('cleanupPostgres', () => {
  it('drops the schema with everything in it', async () => {
    await withSql(async (sql) => {
      await sql`create schema ${sql(iso.schema)}`;
      await sql`create table ${sql(iso.schema)}.t (id int primary key)`;
      await sql`insert into ${sql(iso.schema)}.t values (1)`;
    });

    await cleanupPostgres(databaseUrl(), iso.schema);

    const rows = await withSql((sql) => sql`select 1 from information_schema.schemata where schema_name = ${iso.schema}`);
    expect(rows).toHaveLength(0);
  });

  it('is a no-op for a schema that does not exist', async () => {
    await expect(cleanupPostgres(databaseUrl(), isolation('never created').schema)).resolves.toBeUndefined();
  });
});
