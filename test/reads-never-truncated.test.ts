import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Guarantee 3: reads return the newest `limit` durable messages whatever Redis holds.
const names = isolation('reads_never_truncated');
const redis = new Redis(redisUrl());
afterAll(async () => {
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

let n = 0;
const newUser = () => `g3_${n++}`;
const contents = (messages: { content: string }[]) => messages.map((m) => m.content);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Removes every hot copy of the store's keys, as TTL expiry or eviction would. */
async function expireHotCopies(): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${names.keyPrefix}*`, 'COUNT', 1000);
    cursor = next;
    const hot = keys.filter((key) => /:[hds]$/.test(key));
    if (hot.length > 0) await redis.del(...hot);
  } while (cursor !== '0');
}

describe.each(['write-through', 'write-behind'] as const)('%s', (mode) => {
  const store = makeStore(mode, names, { historyLimit: 5, ttlSeconds: { history: 0.3, userData: 0.3, subscribers: 0.3 } });
  afterAll(() => store.close());

  it('a message arriving after the hot copy expired does not make reads forget the older ones', async () => {
    const user = newUser();
    for (const text of ['1', '2', '3']) await store.addMemory(user, 'user', text);
    expect(contents(await store.getHistory(user))).toEqual(['1', '2', '3']);
    await sleep(400); // the real TTL runs out
    expect(await redis.exists(`${names.keyPrefix}:{${user}}:h`)).toBe(0);
    await store.addMemory(user, 'user', '4');
    expect(contents(await store.getHistory(user))).toEqual(['1', '2', '3', '4']);
    await store.addMemory(user, 'user', '5');
    expect(contents(await store.getHistory(user))).toEqual(['1', '2', '3', '4', '5']);
  });

  it('a limit above the hot copy reads PostgreSQL (and pending writes)', async () => {
    const user = newUser();
    for (let i = 1; i <= 12; i++) await store.addMemory(user, 'user', String(i));
    expect(contents(await store.getHistory(user))).toEqual(['8', '9', '10', '11', '12']);
    expect(contents(await store.getHistory(user, { limit: 8 }))).toEqual(['5', '6', '7', '8', '9', '10', '11', '12']);
    expect(contents(await store.getHistory(user, { limit: 100 }))).toHaveLength(12);
  });

  it('user data and subscribers survive their hot copies expiring', async () => {
    const [user, other] = [newUser(), newUser()];
    await store.setUserPhone(user, '+79991234567');
    await store.setBookingData(user, { service: 'haircut' });
    await store.addEmailSubscriber(user);
    await store.addEmailSubscriber(other);
    expect(await store.getUserPhone(user)).toBe('+79991234567');
    expect(await store.isEmailSubscriber(user)).toBe(true);
    await expireHotCopies();
    await store.setUserPhone(user, '+79990000000');
    expect(await store.getBookingData(user)).toEqual({ service: 'haircut' });
    expect(await store.getUserPhone(user)).toBe('+79990000000');
    await expireHotCopies();
    const third = newUser();
    await store.addEmailSubscriber(third);
    expect(await store.getEmailSubscribers()).toEqual(expect.arrayContaining([user, other, third]));
    expect(await store.isEmailSubscriber(other)).toBe(true);
  });

  it('a read racing a write never installs a copy without that write', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'seed');
    for (let round = 0; round < 20; round++) {
      await expireHotCopies();
      const text = `r${round}`;
      await Promise.all([store.getHistory(user), store.addMemory(user, 'user', text), store.getHistory(user)]);
      expect(contents(await store.getHistory(user)).at(-1)).toBe(text);
    }
  });
});
