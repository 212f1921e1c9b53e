import { Redis } from 'ioredis';
import postgres from 'postgres';
import type { DataKeyStore, EncryptionOptions } from '../../src/index.js';
import { isSealed, open, type SealedField, sealedKeyId } from '../../src/crypto/cipher.js';
import { DataKeys, KeyRing } from '../../src/crypto/keys.js';
import { afterEach } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, redisUrl, type Isolation } from './services.js';
import { isolation } from './stores.js';

/** Two master keys for tests (fixed bytes, so a leak of one would be easy to grep for). */
export const K1 = Buffer.alloc(32, 0x11);
export const K2 = Buffer.alloc(32, 0x22);

export function encryption(extra: Partial<EncryptionOptions> = {}): EncryptionOptions {
  return { keys: { k1: K1 }, current: 'k1', ...extra };
}

/** Every value under a key prefix, as one text (strings, lists, hashes, sets, sorted sets). */
export async function rawRedis(url: string, keyPrefix: string): Promise<string> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  try {
    const parts: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const type = await client.type(key);
        if (type === 'string') parts.push(key, (await client.get(key)) ?? '');
        else if (type === 'list') parts.push(key, ...(await client.lrange(key, 0, -1)));
        else if (type === 'hash') parts.push(key, JSON.stringify(await client.hgetall(key)));
        else if (type === 'set') parts.push(key, ...(await client.smembers(key)));
        else if (type === 'zset') parts.push(key, ...(await client.zrange(key, '0', '-1')));
      }
    } while (cursor !== '0');
    return parts.join('\n');
  } finally {
    client.disconnect();
  }
}

/** Every row of every table of a schema, as one text. */
export async function rawPostgres(url: string, schema: string): Promise<string> {
  const sql = postgres(url, { onnotice: () => {}, max: 1 });
  try {
    const tables = await sql`select table_name from information_schema.tables where table_schema = ${schema}`;
    const parts: string[] = [];
    for (const { table_name } of tables) {
      const rows = await sql`select t::text as row from ${sql(`${schema}.${table_name as string}`)} t`;
      parts.push(table_name as string, ...rows.map((r) => r.row as string));
    }
    return parts.join('\n');
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * Opens sealed values read from PostgreSQL directly (as a DBA with the master keys would), for
 * checks that compare raw rows with what a process acknowledged.
 */
export async function postgresOpener(url: string, schema: string, options: EncryptionOptions = encryption()) {
  const sql = postgres(url, { onnotice: () => {}, max: 1 });
  const store: DataKeyStore = {
    readDataKeys: async (user) => {
      const rows = await sql`select key_id, master_id, wrapped, destroyed_by from ${sql(`${schema}.data_keys`)} where user_id = ${user}`;
      return rows.map((r) => ({
        id: r.key_id as string,
        master: r.master_id as string,
        wrapped: r.wrapped as string,
        ...(r.destroyed_by === null ? {} : { destroyed: r.destroyed_by as string }),
      }));
    },
    saveDataKey: () => Promise.reject(new Error('read only')),
    destroyDataKeys: () => Promise.reject(new Error('read only')),
    staleDataKeys: () => Promise.reject(new Error('read only')),
    rewrapDataKey: () => Promise.reject(new Error('read only')),
  };
  const keys = new DataKeys(new KeyRing(options), store);
  return {
    /** The plaintext of a sealed value; a value that is not sealed is returned as `PLAINTEXT:<value>`, so a check sees it. */
    open: async (user: string, field: SealedField, value: string): Promise<string> => {
      if (!isSealed(value)) return `PLAINTEXT:${value}`;
      const key = await keys.forRead(user, sealedKeyId(value));
      if (!Buffer.isBuffer(key)) return 'unusable' in key ? `UNUSABLE:${value}` : `SHREDDED:${value}`;
      return open(key, user, field, value);
    },
    close: () => sql.end({ timeout: 1 }),
  };
}

/**
 * A test file's clean-up: `cleanup` takes closers, run newest first after each test; `names` gives
 * an isolated key prefix and schema, removed after the test.
 */
export function cleanups(): { cleanup: (() => Promise<unknown>)[]; names: (name: string) => Isolation } {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of cleanup.splice(0).reverse()) await close();
  });
  const names = (name: string): Isolation => {
    const n = isolation(name);
    cleanup.push(async () => {
      await cleanupRedis(redisUrl(), n.keyPrefix);
      await cleanupPostgres(databaseUrl(), n.schema);
    });
    return n;
  };
  return { cleanup, names };
}
