import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryAdapter, PostgresAdapter, RedisAdapter, TieredStore, ValidationError } from '../src/index.js';
import { badCalls, LIMITS, rejection } from './helpers/bad-input.js';

// Guarantee 7: bad input gets a typed error with a stable code. Pure logic: a memory-only store and
// adapters that are never connected (test/bad-input-on-servers.test.ts checks nothing reaches the servers).
const store = new TieredStore({ logger: false, memory: new MemoryAdapter(), limits: LIMITS });
afterAll(() => store.close());

describe('bad input', () => {
  it.each(badCalls(store))('%s is refused with its code', async (_name, call, code) => {
    const error = await rejection(call);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code, name: 'ValidationError' });
    expect((error as Error).message.length).toBeGreaterThan(10);
  });

  it('wrote nothing', async () => {
    expect(await store.getHistory('valid_user')).toEqual([]);
    expect(await store.getUserPhone('valid_user')).toBeNull();
    expect(await store.getEmailSubscribers()).toEqual([]);
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
  // postgres.js connects lazily: a client on an address nothing listens on is never used.
  const unusedUrl = 'postgres://nobody@127.0.0.1:9/none';
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
    ['a postgres.js client that renames columns', () => new PostgresAdapter({ sql: postgres(unusedUrl, { transform: postgres.camel }) }), 'INVALID_OPTION'],
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
