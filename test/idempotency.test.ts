import postgres from 'postgres';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore, TOPOLOGIES } from './helpers/stores.js';

// A re-delivered Telegram update (same update_id) is stored once.
const names = isolation('idempotency');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
const redis = new Redis(redisUrl());
afterAll(async () => {
  await sql.end();
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const rows = async (user: string) =>
  (await sql`select content from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`).map((r) => r.content);

describe.each(TOPOLOGIES)('%s', (topology) => {
  it('a repeated idempotency key stores nothing and returns the first message', async () => {
    const stores = [makeStore(topology, names), makeStore(topology, names)];
    const user = `idem_${topology.replace(/ /g, '_')}`;
    const first = await stores[0]!.addMemory(user, 'user', 'hello', { idempotencyKey: 1001 });
    const again = await stores[0]!.addMemory(user, 'user', 'hello', { idempotencyKey: '1001' });
    expect(again.id).toBe(first.id);
    expect(again.createdAt.getTime()).toBe(first.createdAt.getTime());
    await stores[0]!.addMemory(user, 'user', 'next', { idempotencyKey: 1002 });
    await stores[0]!.addMemory(`${user}_other`, 'user', 'same key, other user', { idempotencyKey: 1001 });
    if (topology !== 'memory only') {
      // Another process sees the same key (through Redis or PostgreSQL).
      const elsewhere = await stores[1]!.addMemory(user, 'user', 'hello', { idempotencyKey: 1001 });
      expect(elsewhere.id).toBe(first.id);
    }
    expect((await stores[0]!.getHistory(user)).map((m) => m.content)).toEqual(['hello', 'next']);
    await stores[0]!.syncNow();
    if (topology !== 'memory only' && topology !== 'redis only') expect(await rows(user)).toEqual(['hello', 'next']);
    await Promise.all(stores.map((s) => s.close()));
  });
});

it("past Redis's window PostgreSQL still refuses the repeat, and the hot copy does not keep it", async () => {
  const store = makeStore('write-through', names);
  const user = 'idem_window';
  await store.addMemory(user, 'user', 'once', { idempotencyKey: 'upd-7' });
  await store.getHistory(user); // a hot copy exists
  await redis.del(`${names.keyPrefix}:{${user}}:i`); // as if a day had passed
  await store.addMemory(user, 'user', 'once', { idempotencyKey: 'upd-7' });
  expect((await store.getHistory(user)).map((m) => m.content)).toEqual(['once']);
  expect(await rows(user)).toEqual(['once']);
  await store.close();
});

it('refuses an unusable key with INVALID_OPTION', async () => {
  const store = makeStore('memory only', names);
  await expect(store.addMemory(1, 'user', 'x', { idempotencyKey: '' })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  await expect(store.addMemory(1, 'user', 'x', { idempotencyKey: 1.5 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
  expect(await store.getHistory(1)).toEqual([]);
  await store.close();
});
