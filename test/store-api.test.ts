import { afterAll, describe, expect, it } from 'vitest';
import { TieredStore } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore, TOPOLOGIES } from './helpers/stores.js';

const names = isolation('store_api');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

let n = 0;
const newUser = () => `api_${n++}_${Date.now()}`;

describe.each(TOPOLOGIES)('every method round-trips (%s)', (topology) => {
  const store = makeStore(topology, names, { historyLimit: 3 });
  afterAll(() => store.close());

  it('addMemory returns the stored message and getHistory returns the newest, oldest first', async () => {
    const user = newUser();
    const first = await store.addMemory(user, 'system', 'be brief');
    expect(first).toMatchObject({ role: 'system', content: 'be brief' });
    expect(first.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(first.createdAt).toBeInstanceOf(Date);
    await store.addMemory(user, 'user', 'hi', { meta: { updateId: 7 } });
    await store.addMemory(user, 'assistant', 'hello');
    await store.addMemory(user, 'tool', '{"ok":true}');
    const history = await store.getHistory(user);
    expect(history.map((m) => m.content)).toEqual(['hi', 'hello', '{"ok":true}']);
    expect(history[0]).toMatchObject({ role: 'user', meta: { updateId: 7 } });
    expect((await store.getHistory(user, { limit: 1 })).map((m) => m.content)).toEqual(['{"ok":true}']);
    expect((await store.getHistory(user, { limit: 10 })).map((m) => m.content)).toEqual(
      topology === 'redis only' || topology === 'memory only' || topology === 'postgres only' || topology === 'write-through' || topology === 'write-behind'
        ? ['be brief', 'hi', 'hello', '{"ok":true}']
        : [],
    );
    expect(await store.getHistory(user, { limit: 0 })).toEqual([]);
  });

  it('treats 123 and "123" as the same user', async () => {
    const id = 9_000_000 + n++;
    await store.addMemory(id, 'user', 'number');
    await store.addMemory(String(id), 'user', 'string');
    expect((await store.getHistory(String(id))).map((m) => m.content)).toEqual(['number', 'string']);
    expect((await store.getHistory(id)).map((m) => m.content)).toEqual(['number', 'string']);
  });

  it('clearHistory empties the history and later messages start afresh', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'old');
    await store.getHistory(user);
    await store.clearHistory(user);
    expect(await store.getHistory(user)).toEqual([]);
    await store.addMemory(user, 'user', 'new');
    expect((await store.getHistory(user, { limit: 10 })).map((m) => m.content)).toEqual(['new']);
  });

  it('keeps a normalised phone, booking data, and null clears them', async () => {
    const user = -100_123_456 - n++;
    expect(await store.getUserPhone(user)).toBeNull();
    expect(await store.getBookingData(user)).toBeNull();
    expect(await store.setUserPhone(user, '79991234567')).toBe('+79991234567');
    expect(await store.getUserPhone(user)).toBe('+79991234567');
    await store.setUserPhone(user, '+1 (415) 555-26.71');
    expect(await store.getUserPhone(user)).toBe('+14155552671');
    const booking = { service: 'haircut', date: '2026-12-01', extras: ['wash'], price: 25.5, paid: false, note: null };
    await store.setBookingData(user, booking);
    booking.service = 'changed after the call';
    expect(await store.getBookingData(user)).toEqual({ service: 'haircut', date: '2026-12-01', extras: ['wash'], price: 25.5, paid: false, note: null });
    await store.setUserPhone(user, null);
    await store.setBookingData(user, null);
    expect(await store.getUserPhone(user)).toBeNull();
    expect(await store.getBookingData(user)).toBeNull();
  });

  it('adds, lists and removes email subscribers as strings', async () => {
    const [a, b] = [7_000_000 + n++, newUser()];
    expect(await store.isEmailSubscriber(a)).toBe(false);
    await store.addEmailSubscriber(a);
    await store.addEmailSubscriber(b);
    await store.addEmailSubscriber(b);
    expect(await store.isEmailSubscriber(a)).toBe(true);
    expect(await store.getEmailSubscribers()).toEqual(expect.arrayContaining([String(a), b]));
    await store.removeEmailSubscriber(a);
    expect(await store.isEmailSubscriber(a)).toBe(false);
    const after = await store.getEmailSubscribers();
    expect(after).not.toContain(String(a));
    expect(after.filter((s) => s === b)).toHaveLength(1);
  });

  it('deleteUser erases history, phone, booking and subscription', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'private');
    await store.setUserPhone(user, '+79990000000');
    await store.setBookingData(user, { service: 'x' });
    await store.addEmailSubscriber(user);
    await store.getHistory(user);
    await store.deleteUser(user);
    expect(await store.getHistory(user, { limit: 10 })).toEqual([]);
    expect(await store.getUserPhone(user)).toBeNull();
    expect(await store.getBookingData(user)).toBeNull();
    expect(await store.isEmailSubscriber(user)).toBe(false);
    expect(await store.getEmailSubscribers()).not.toContain(user);
  });

  it('reports health and a sync result with the contract shapes', async () => {
    const health = store.health();
    expect(health).toMatchObject({ memory: 'up', deadLetters: 0 });
    expect(health.redis).toBe(topology === 'memory only' || topology === 'postgres only' ? 'absent' : 'up');
    expect(health.postgres).toBe(topology === 'memory only' || topology === 'redis only' ? 'absent' : 'up');
    const result = await store.syncNow();
    expect(Object.keys(result).sort()).toEqual(['durationMs', 'messages', 'pending', 'subscribers', 'userData']);
    expect(result.pending).toBe(0);
    expect(store.health().pending).toBe(0);
    if (topology !== 'memory only') expect(store.health().lastSyncAt).toBeInstanceOf(Date);
  });
});

describe('lifecycle', () => {
  // close() and the memory-only bound: test/memory-store.test.ts (no server needed).
  it('leaves a client the user passed in open, and closes what it opened', async () => {
    const { default: postgres } = await import('postgres');
    const { Redis } = await import('ioredis');
    const sql = postgres(databaseUrl(), { onnotice: () => {} });
    const client = new Redis(redisUrl());
    const { PostgresAdapter, RedisAdapter } = await import('../src/index.js');
    const store = new TieredStore({
      logger: false,
      redis: new RedisAdapter({ client, keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ sql, schema: names.schema }),
    });
    await store.addMemory('passed-in', 'user', 'hello');
    await store.close();
    expect(await client.ping()).toBe('PONG');
    expect((await sql`select 1 as one`)[0]?.one).toBe(1);
    client.disconnect();
    await sql.end();

    const owned = new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix });
    const ownedStore = new TieredStore({ logger: false, redis: owned });
    await ownedStore.addMemory('owned', 'user', 'hello');
    await ownedStore.close();
    expect(owned.client.status).toBe('end');
  });
});
