import postgres from 'postgres';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../src/index.js';
import { badCalls, LIMITS, rejection } from './helpers/bad-input.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Guarantee 7 on real servers: bad input is refused before any tier sees it (the codes themselves
// are checked without servers in test/validation.test.ts).
const names = isolation('validation');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
const redis = new Redis(redisUrl());
const store = makeStore('write-through', names, { limits: LIMITS });
afterAll(async () => {
  await store.close();
  await sql.end();
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

describe('bad input on a write-through store', () => {
  it.each(badCalls(store))('%s is refused with its code', async (_name, call, code) => {
    const error = await rejection(call);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code });
  });

  it('wrote nothing to Redis or PostgreSQL', async () => {
    await store.syncNow(); // the tables exist once the store has started
    const [messages] = await sql`select count(*)::int as n from ${sql(`${names.schema}.messages`)}`;
    const [users] = await sql`select count(*)::int as n from ${sql(`${names.schema}.users`)}`;
    expect(messages?.n).toBe(0);
    expect(users?.n).toBe(0);
    const [, keys] = await redis.scan('0', 'MATCH', `${names.keyPrefix}*`, 'COUNT', 10_000);
    expect(keys).toEqual([]);
  });

  it('accepts the edges on both tiers', async () => {
    expect(await store.setUserPhone('edge_user', '+123 456-789.012 (345)')).toBe('+123456789012345');
    await store.addMemory(Number.MAX_SAFE_INTEGER, 'user', 'big id');
    expect((await store.getHistory(Number.MAX_SAFE_INTEGER)).map((m) => m.content)).toEqual(['big id']);
  });
});
