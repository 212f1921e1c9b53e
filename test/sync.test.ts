import postgres from 'postgres';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { RedisKeys } from '../src/adapters/redis-keys.js';

// Write-behind and guarantee 10: sync moves only what changed, in batches, idempotently, safely in parallel.
const names = isolation('sync');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
const redis = new Redis(redisUrl());
const messages = () => sql(`${names.schema}.messages`);
const users = () => sql(`${names.schema}.users`);
afterAll(async () => {
  await sql.end();
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const countRows = async (user: string) => Number((await sql`select count(*) from ${messages()} where user_id = ${user}`)[0]?.count);

describe('write-behind', () => {
  it('acknowledges after Redis, reads see the write at once, and syncNow moves it to PostgreSQL', async () => {
    const store = makeStore('write-behind', names);
    const user = 'wb_basic';
    await store.addMemory(user, 'user', 'hello');
    await store.setUserPhone(user, '+79991234567');
    await store.addEmailSubscriber(user);
    expect(await countRows(user)).toBe(0);
    expect((await store.getHistory(user)).map((m) => m.content)).toEqual(['hello']);
    expect(await store.getUserPhone(user)).toBe('+79991234567');
    expect(await store.getEmailSubscribers()).toContain(user);
    expect(store.health().pending).toBeGreaterThanOrEqual(3);

    const result = await store.syncNow();
    expect(result).toMatchObject({ messages: 1, userData: 1, subscribers: 1, pending: 0 });
    expect(await countRows(user)).toBe(1);
    const [row] = await sql`select phone, subscribed from ${users()} where user_id = ${user}`;
    expect(row).toMatchObject({ phone: '+79991234567', subscribed: true });
    expect(await store.syncNow()).toMatchObject({ messages: 0, userData: 0, subscribers: 0, pending: 0 });
    expect(await countRows(user)).toBe(1);
    await store.close();
  });

  it('moves only what is pending: one new message after 2,000 synced moves one', async () => {
    const store = makeStore('write-behind', names, { syncBatchSize: 500 });
    for (let u = 0; u < 20; u++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.addMemory(`wb_many_${u}`, 'user', `m${i}`)));
    }
    const first = await store.syncNow();
    expect(first.messages).toBe(2000);
    await store.addMemory('wb_many_3', 'user', 'late');
    const second = await store.syncNow();
    expect(second).toMatchObject({ messages: 1, pending: 0 });
    expect(await countRows('wb_many_3')).toBe(101);
    await store.close();
  });

  it('several processes syncing at once move every write exactly once', async () => {
    const writer = makeStore('write-behind', names);
    const syncers = [0, 1, 2, 3].map(() => makeStore('write-behind', names, { syncBatchSize: 50 }));
    const written = await Promise.all(Array.from({ length: 600 }, (_, i) => writer.addMemory(`wb_par_${i % 7}`, 'assistant', `m${i}`)));
    await Promise.all(syncers.map((s) => s.syncNow()));
    await writer.syncNow();
    const rows = await sql`select id from ${messages()} where user_id like 'wb_par_%'`;
    expect(rows.map((r) => r.id).sort()).toEqual(written.map((m) => m.id).sort());
    const left = await redis.get(`${names.keyPrefix}:{sync:0}:queued`);
    expect(Number(left)).toBe(0);
    expect(await redis.hlen(`${names.keyPrefix}:{sync:0}:queue`)).toBe(0);
    await Promise.all([writer, ...syncers].map((s) => s.close()));
  });

  it('startSync moves pending writes in the background, and close() flushes the rest', async () => {
    const store = makeStore('write-behind', names);
    const events: number[] = [];
    store.on('syncComplete', (r) => events.push(r.messages));
    store.startSync(100);
    await store.addMemory('wb_bg', 'user', 'one');
    await expect.poll(() => countRows('wb_bg'), { timeout: 5000 }).toBe(1);
    // The row commits before the pass that moved it ends and reports.
    await expect.poll(() => events.some((m) => m >= 1), { timeout: 5000 }).toBe(true);
    store.stopSync();
    await store.addMemory('wb_bg', 'user', 'two');
    await store.close();
    expect(await countRows('wb_bg')).toBe(2);
  });

  it('a deleteUser erases writes still pending in Redis: nothing reaches PostgreSQL', async () => {
    const store = makeStore('write-behind', names);
    const user = 'wb_erase';
    await store.addMemory(user, 'user', 'secret');
    await store.setBookingData(user, { card: '4111' });
    await store.deleteUser(user);
    await store.syncNow();
    expect(await countRows(user)).toBe(0);
    const [row] = await sql`select phone, booking, subscribed from ${users()} where user_id = ${user}`;
    expect(row ?? { booking: null }).toMatchObject({ booking: null });
    expect(await store.getHistory(user)).toEqual([]);
    await store.close();
  });

  it('clearHistory while appends are pending keeps only what came after the clear', async () => {
    const store = makeStore('write-behind', names);
    const user = 'wb_clear';
    await store.addMemory(user, 'user', 'before');
    await store.clearHistory(user);
    await store.addMemory(user, 'user', 'after');
    expect((await store.getHistory(user)).map((m) => m.content)).toEqual(['after']);
    await store.syncNow();
    const rows = await sql`select content from ${messages()} where user_id = ${user}`;
    expect(rows.map((r) => r.content)).toEqual(['after']);
    await store.close();
  });

  it('with the pending index in shards on one Redis, one pass moves and acknowledges the users of every shard', async () => {
    const keyPrefix = `${names.keyPrefix}:shards`;
    const store = new TieredStore({
      logger: false,
      writeMode: 'write-behind',
      syncBatchSize: 250,
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix, shards: 4 }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    const people = Array.from({ length: 300 }, (_, i) => `wb_shard_${i}`);
    for (let i = 0; i < people.length; i += 50) {
      await Promise.all(
        people.slice(i, i + 50).flatMap((u) => [store.addMemory(u, 'user', 'a'), store.addMemory(u, 'assistant', 'b'), store.setUserPhone(u, '+79990000000')]),
      );
    }
    const keys = new RedisKeys(keyPrefix, 4);
    const indexed = async () =>
      Promise.all(keys.shardList().map(async (shard) => [await redis.hlen(keys.pending(shard)[0]), Number((await redis.get(keys.pending(shard)[1])) ?? 0)]));
    // Every shard holds users (and counts 3 entries for each), so acknowledgements go to all four.
    const before = await indexed();
    expect(before.every(([users]) => (users as number) > 0)).toBe(true);
    expect(before.reduce((sum, [users]) => sum + (users as number), 0)).toBe(people.length);
    expect(before.reduce((sum, [, count]) => sum + (count as number), 0)).toBe(people.length * 3);

    expect(await store.syncNow()).toMatchObject({ messages: 600, userData: 300, pending: 0 });
    expect(await indexed()).toEqual(keys.shardList().map(() => [0, 0]));
    const [row] = await sql`select count(*)::int as count from ${messages()} where user_id like 'wb\_shard\_%'`;
    expect(row?.count).toBe(600);
    expect(await store.syncNow()).toMatchObject({ messages: 0, userData: 0, pending: 0 });
    await store.close();
  });
});
