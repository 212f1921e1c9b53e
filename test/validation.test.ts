import postgres from 'postgres';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryAdapter, PostgresAdapter, RedisAdapter, TieredStore, ValidationError } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Guarantee 7: bad input gets a typed error with a stable code and writes nothing.
const names = isolation('validation');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
const redis = new Redis(redisUrl());
const store = makeStore('write-through', names, { limits: { contentBytes: 1000, bookingBytes: 200, metaBytes: 100 } });
afterAll(async () => {
  await store.close();
  await sql.end();
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

type Call = [string, () => Promise<unknown>, string];
const u = 'valid_user';
const calls: Call[] = [
  ['a fractional user id', () => store.addMemory(1.5, 'user', 'x'), 'INVALID_USER_ID'],
  ['an unsafe integer user id', () => store.addMemory(2 ** 60, 'user', 'x'), 'INVALID_USER_ID'],
  ['NaN as user id', () => store.addMemory(Number.NaN, 'user', 'x'), 'INVALID_USER_ID'],
  ['an empty user id', () => store.addMemory('', 'user', 'x'), 'INVALID_USER_ID'],
  ['a user id with a brace', () => store.addMemory('a{b}', 'user', 'x'), 'INVALID_USER_ID'],
  ['a user id of 129 characters', () => store.setUserPhone('a'.repeat(129), '+79991234567'), 'INVALID_USER_ID'],
  ['a user id that is an object', () => store.getHistory({} as never), 'INVALID_USER_ID'],
  ['an unknown role', () => store.addMemory(u, 'admin' as never, 'x'), 'INVALID_ROLE'],
  ['content that is not a string', () => store.addMemory(u, 'user', 42 as never), 'INVALID_CONTENT'],
  ['content with NUL', () => store.addMemory(u, 'user', 'a\u0000b'), 'INVALID_CONTENT'],
  ['content with a lone surrogate', () => store.addMemory(u, 'user', 'a\ud800b'), 'INVALID_CONTENT'],
  ['content over the limit', () => store.addMemory(u, 'user', 'é'.repeat(501)), 'CONTENT_TOO_LARGE'],
  ['meta that is an array', () => store.addMemory(u, 'user', 'x', { meta: [] as never }), 'INVALID_META'],
  ['meta over its limit', () => store.addMemory(u, 'user', 'x', { meta: { k: 'v'.repeat(200) } }), 'INVALID_META'],
  ['a phone with letters', () => store.setUserPhone(u, '+7999abc4567'), 'INVALID_PHONE'],
  ['a phone of 7 digits', () => store.setUserPhone(u, '1234567'), 'INVALID_PHONE'],
  ['a phone of 16 digits', () => store.setUserPhone(u, '1234567890123456'), 'INVALID_PHONE'],
  ['a phone that is a number', () => store.setUserPhone(u, 79991234567 as never), 'INVALID_PHONE'],
  ['booking that is a string', () => store.setBookingData(u, 'haircut' as never), 'INVALID_BOOKING'],
  ['booking that is an array', () => store.setBookingData(u, ['haircut'] as never), 'INVALID_BOOKING'],
  ['booking with a function', () => store.setBookingData(u, { f: () => 1 } as never), 'INVALID_BOOKING'],
  ['booking with a BigInt', () => store.setBookingData(u, { n: 1n } as never), 'INVALID_BOOKING'],
  ['booking with Infinity', () => store.setBookingData(u, { n: Number.POSITIVE_INFINITY }), 'INVALID_BOOKING'],
  ['booking with a Date', () => store.setBookingData(u, { at: new Date() } as never), 'INVALID_BOOKING'],
  ['booking that refers to itself', () => store.setBookingData(u, cyclic as never), 'INVALID_BOOKING'],
  ['booking with NUL in a string', () => store.setBookingData(u, { s: '\u0000' }), 'INVALID_BOOKING'],
  ['booking over the limit', () => store.setBookingData(u, { s: 'x'.repeat(300) }), 'INVALID_BOOKING'],
  ['a negative history limit', () => store.getHistory(u, { limit: -1 }), 'INVALID_OPTION'],
  ['a fractional history limit', () => store.getHistory(u, { limit: 2.5 }), 'INVALID_OPTION'],
];

describe('bad input', () => {
  it.each(calls)('%s is refused with its code', async (_name, call, code) => {
    const error = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code, name: 'ValidationError' });
    expect((error as Error).message.length).toBeGreaterThan(10);
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

  it('accepts the edges: 8 and 15 digits, spaces/dashes/dots/brackets, content exactly at the limit', async () => {
    const edge = 'edge_user';
    expect(await store.setUserPhone(edge, '12345678')).toBe('+12345678');
    expect(await store.setUserPhone(edge, '+123 456-789.012 (345)')).toBe('+123456789012345');
    await store.addMemory(edge, 'user', 'é'.repeat(500));
    await store.addMemory(Number.MAX_SAFE_INTEGER, 'user', 'big id');
    await store.addMemory(-Number.MAX_SAFE_INTEGER, 'user', 'negative id');
    expect((await store.getHistory(Number.MAX_SAFE_INTEGER)).map((m) => m.content)).toEqual(['big id']);
  });
});

describe('bad configuration', () => {
  const config: [string, () => unknown, string][] = [
    ['an unknown writeMode', () => new TieredStore({ writeMode: 'later' as never }), 'INVALID_OPTION'],
    ['historyLimit 0', () => new TieredStore({ historyLimit: 0 }), 'INVALID_OPTION'],
    ['a negative TTL', () => new TieredStore({ ttlSeconds: { history: -1 } }), 'INVALID_OPTION'],
    ['a Redis URL that is not one', () => new RedisAdapter({ url: 'localhost:6379' }), 'INVALID_URL'],
    ['a PostgreSQL URL with the wrong scheme', () => new PostgresAdapter({ url: 'mysql://u:pw@h/db' }), 'INVALID_URL'],
    ['a schema with a capital letter', () => new PostgresAdapter({ schema: 'Bad' }), 'INVALID_OPTION'],
    ['a key prefix with a brace', () => new RedisAdapter({ keyPrefix: 'a{b' }), 'INVALID_OPTION'],
    ['a zero Redis timeout', () => new RedisAdapter({ timeoutMs: 0 }), 'INVALID_OPTION'],
    ['a MemoryAdapter bound of 0', () => new MemoryAdapter({ maxMessages: 0 }), 'INVALID_OPTION'],
    ['a postgres.js client that renames columns', () => new PostgresAdapter({ sql: postgres(databaseUrl(), { transform: postgres.camel }) }), 'INVALID_OPTION'],
  ];
  it.each(config)('%s is refused with its code', (_name, make, code) => {
    expect(make).toThrow(expect.objectContaining({ code }));
  });

  it('an unusable URL never shows its password', () => {
    expect(() => new PostgresAdapter({ url: 'mysql://user:hunter2secret@h/db' })).toThrow(/mysql:\/\/user:\*\*\*@h\/db/);
    try {
      new PostgresAdapter({ url: 'mysql://user:hunter2secret@h/db' });
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('hunter2secret');
    }
  });
});
