import postgres from 'postgres';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisAdapter } from '../src/index.js';
import { Secrets, silentLogger } from '../src/logger.js';
import { isMiss } from '../src/adapters/contract.js';
import { denseId } from '../src/model/codec.js';
import { createIdGenerator, idTime } from '../src/model/ids.js';
import type { Op } from '../src/model/ops.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Data that 0.1.0 left in Redis (its encodings, `git show db0ce7e:src/model/codec.ts`) reads as thread 'main' and syncs.
const names = isolation('redis_from_01');
const redis = new Redis(redisUrl());
const sql = postgres(databaseUrl(), { onnotice: () => {} });
afterAll(async () => {
  redis.disconnect();
  await sql.end();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const id = createIdGenerator();
const key = (user: string, name: string) => `${names.keyPrefix}:{${user}}:${name}`;
/** 0.1's item and journal encodings: no thread, no edit stamp. */
const item01 = (messageId: string, content: string, createdAt: number, extra = '') =>
  `{"id":"${messageId}","role":"user","content":${JSON.stringify(content)},"createdAt":${createdAt}${extra}}`;

function cacheAdapter(role: 'cache' | 'durable' = 'cache'): RedisAdapter {
  const adapter = new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix });
  adapter.bind({
    role,
    historyLimit: 10,
    ttlMs: { history: 60_000, userData: 60_000, subscribers: 60_000 },
    logger: silentLogger,
    secrets: new Secrets(),
  });
  return adapter;
}

describe('Redis data written by 0.1.0', () => {
  it('reads a 0.1 history copy as thread main, finds and edits its items in place, and keeps other threads apart', async () => {
    const user = 'copy01';
    const [a, b] = [id(), id()];
    const at = Date.UTC(2025, 5, 1);
    await redis.rpush(key(user, 'h'), item01(a, 'first', at), item01(b, 'second "quoted"', at + 1, ',"meta":{"x":[1]},"key":"tg:42"'));
    await redis.pexpire(key(user, 'h'), 60_000);
    await redis.hset(key(user, 'm'), 'v', '7');
    const adapter = cacheAdapter();
    await adapter.connect();
    try {
      for (const read of [await adapter.readHistory(user, 10), await adapter.readHistory(user, 10, { thread: 'main' })]) {
        if (isMiss(read)) throw new Error('the 0.1 copy was not read');
        expect(read.messages).toEqual([
          // 0.1's items carry no token count: they read with the default formula's.
          { id: a, role: 'user', content: 'first', createdAt: new Date(at), thread: 'main', tokens: 6 },
          { id: b, role: 'user', content: 'second "quoted"', createdAt: new Date(at + 1), thread: 'main', meta: { x: [1] }, tokens: 8 },
        ]);
      }
      expect(await adapter.readMessage(user, b)).toMatchObject({ id: b, thread: 'main', content: 'second "quoted"' });
      expect(isMiss(await adapter.readHistory(user, 10, { thread: 'topic' }))).toBe(true);

      const editId = id();
      expect(await adapter.write([{ kind: 'edit', user, id: editId, thread: 'main', target: b, content: 'second, edited', updatedAt: at + 5 }])).toEqual([
        true,
      ]);
      const [, edited] = await redis.lrange(key(user, 'h'), 0, -1);
      // The stamp follows the id; role, createdAt and the idempotency key are kept; the edit's meta (none) replaces the old.
      expect(edited).toBe(`{"id":"${b}","v":"${editId}","role":"user","content":"second, edited","createdAt":${at + 1},"key":"tg:42","updatedAt":${at + 5}}`);
      expect(await adapter.readMessage(user, b)).toEqual({
        id: b,
        role: 'user',
        content: 'second, edited',
        createdAt: new Date(at + 1),
        thread: 'main',
        updatedAt: new Date(at + 5),
        tokens: 8,
      });

      await adapter.write([{ kind: 'delete', user, id: id() }]);
      expect(await redis.exists(key(user, 'h'))).toBe(0);
    } finally {
      await adapter.close();
    }
  });

  it('decodes a 0.1 journal as thread main and syncs it to PostgreSQL', async () => {
    const [user, cleared] = ['journal01', 'cleared01'];
    const at = Date.now();
    const [first, second, phone, clear] = [id(), id(), id(), id()];
    const entries = [item01(first, 'first', at), item01(second, 'second', at + 1, ',"key":"upd:1"'), `{"id":"${phone}","kind":"phone","value":"+79990001122"}`];
    await redis.rpush(key(user, 'j'), ...entries);
    // 0.1 wrote a clear with no thread: it is the clear of 'main'.
    await redis.rpush(key(cleared, 'j'), `{"id":"${clear}","kind":"clear"}`);
    // 0.1's pending index: user -> entries, and their total.
    await redis.hset(`${names.keyPrefix}:{sync:0}:queue`, user, entries.length, cleared, 1);
    await redis.incrby(`${names.keyPrefix}:{sync:0}:queued`, entries.length + 1);

    const adapter = cacheAdapter();
    await adapter.connect();
    try {
      expect(await adapter.readPending(user)).toEqual([
        { kind: 'append', user, id: first, thread: 'main', role: 'user', content: 'first', createdAt: at },
        { kind: 'append', user, id: second, thread: 'main', role: 'user', content: 'second', createdAt: at + 1, key: 'upd:1' },
        { kind: 'phone', user, id: phone, phone: '+79990001122' },
      ]);
      expect(await adapter.readPending(cleared)).toEqual([{ kind: 'clear', user: cleared, id: clear, thread: 'main' }]);
    } finally {
      await adapter.close();
    }

    const store = makeStore('write-behind', names);
    try {
      expect(await store.syncNow()).toMatchObject({ pending: 0 });
      expect(await redis.llen(key(user, 'j'))).toBe(0);
      expect(await redis.llen(key(cleared, 'j'))).toBe(0);
      const rows = await sql`select id, content from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
      expect(rows.map((r) => [r.id, r.content])).toEqual([
        [first, 'first'],
        [second, 'second'],
      ]);
      // (The thread of a message read back from PostgreSQL is PostgresAdapter's part, checked by its contract.)
      expect((await store.getHistory(user)).map((m) => [m.id, m.content])).toEqual([
        [first, 'first'],
        [second, 'second'],
      ]);
      expect(await store.getUserPhone(user)).toBe('+79990001122');
    } finally {
      await store.close();
    }
  });

  // After an upgrade a list holds items of both forms: 0.1's (and 0.2's) JSON, and the compact form
  // written since. Lua tells them apart by their first character; every script must handle both.
  for (const role of ['cache', 'durable'] as const) {
    it(`a ${role} list mixing 0.1 items and compact ones: ordered inserts, edits in each form, a cut across both, threads`, async () => {
      const user = `mixed01_${role}`;
      const [a, between, b] = [id(), id(), id()];
      const at = Date.UTC(2025, 5, 1);
      await redis.rpush(key(user, 'h'), item01(a, 'old a', at), item01(b, 'old b', at + 2, ',"key":"tg:7"'));
      if (role === 'cache') await redis.pexpire(key(user, 'h'), 60_000);
      const adapter = cacheAdapter(role);
      await adapter.connect();
      const append = (messageId: string, content: string): Op => ({
        kind: 'append',
        user,
        id: messageId,
        thread: 'main',
        role: 'assistant',
        content,
        createdAt: idTime(messageId),
        tokens: 7,
      });
      try {
        const [c, d] = [id(), id()];
        // New items after the old ones, and one that belongs between them (found by id in either form).
        await adapter.write([append(c, 'new c'), append(d, 'new d\nwith a line break'), append(between, 'new, between')]);
        const items = await redis.lrange(key(user, 'h'), 0, -1);
        expect(items.map((item) => item.startsWith('{"id":"'))).toEqual([true, false, true, false, false]);
        const contents = async () => {
          const read = await adapter.readHistory(user, 10);
          if (isMiss(read)) throw new Error('the mixed list was not read');
          return read.messages.map((m) => [m.id, m.content]);
        };
        expect(await contents()).toEqual([
          [a, 'old a'],
          [between, 'new, between'],
          [b, 'old b'],
          [c, 'new c'],
          [d, 'new d\nwith a line break'],
        ]);
        // An old item stays JSON when edited, a compact one compact; each keeps its key, createdAt and thread.
        const [editB, editC] = [id(), id()];
        await adapter.write([
          { kind: 'edit', user, id: editB, thread: 'main', target: b, content: 'old b, edited', updatedAt: at + 9, tokens: 3 },
          { kind: 'edit', user, id: editC, thread: 'main', target: c, content: 'new c, edited', meta: { by: 'moderator' }, updatedAt: at + 10 },
        ]);
        const after = await redis.lrange(key(user, 'h'), 0, -1);
        expect(after[2]).toBe(
          `{"id":"${b}","v":"${editB}","role":"user","content":"old b, edited","createdAt":${at + 2},"key":"tg:7","tokens":3,"updatedAt":${at + 9}}`,
        );
        // 'J': assistant (2) x 8 + flags 3 (a stamp, a tail); the id in its dense form.
        expect(after[3]).toBe(`J${denseId(c)}${editC}{"m":{"by":"moderator"},"u":${at + 10}}\nnew c, edited`);
        expect(await adapter.readMessage(user, c)).toEqual({
          id: c,
          role: 'assistant',
          content: 'new c, edited',
          createdAt: new Date(idTime(c)),
          thread: 'main',
          meta: { by: 'moderator' },
          updatedAt: new Date(at + 10),
          // The edit carried no count: the default formula's of the new content.
          tokens: 8,
        });
        // An older edit of either form changes nothing.
        await adapter.write([
          { kind: 'edit', user, id: editB.replace(/.$/, '0'), thread: 'main', target: b, content: 'stale' },
          { kind: 'edit', user, id: editC.replace(/.$/, '0'), thread: 'main', target: c, content: 'stale' },
        ]);
        expect(await redis.lrange(key(user, 'h'), 0, -1)).toEqual(after);
        if (role === 'durable') {
          const { threads } = await adapter.listThreads(user, 10, null);
          // createdAt from the oldest item (0.1's JSON), the newest id from a compact one, activity from the edits.
          expect(threads).toEqual([
            { id: 'main', title: null, messages: 5, createdAt: new Date(at), updatedAt: new Date(Math.max(at + 10, idTime(d))), lastId: d },
          ]);
        }
        // A cut from 'between' through c takes items of both forms.
        await adapter.write([{ kind: 'cut', user, id: id(), thread: 'main', from: between, to: c }]);
        expect(await contents()).toEqual([
          [a, 'old a'],
          [d, 'new d\nwith a line break'],
        ]);
        // An id the store did not make (an adapter caller's) keeps the long compact form, and is found and edited all the same.
        const own = `${d.slice(0, 25)}z`;
        await adapter.write([append(own, 'own id')]);
        expect((await redis.lrange(key(user, 'h'), -1, -1))[0]?.startsWith(`a${own}2`)).toBe(true);
        await adapter.write([{ kind: 'edit', user, id: id(), thread: 'main', target: own, content: 'own id, edited', tokens: 5 }]);
        expect(await adapter.readMessage(user, own)).toMatchObject({ id: own, content: 'own id, edited', tokens: 5, createdAt: new Date(idTime(own)) });
        expect((await contents()).map(([x]) => x)).toEqual([a, d, own]);
      } finally {
        await adapter.close();
      }
    });
  }
});
