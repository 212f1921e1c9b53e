import { readFileSync } from 'node:fs';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { createIdGenerator } from '../src/model/ids.js';
import type { AppendOp, Op } from '../src/model/ops.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';
import { durableConfig } from './helpers/stores.js';

// A database written by 0.1.0 (its schema as released, its kind of rows) opened by this version:
// migrations 5 and 6 run on connect, everything 0.1 stored reads as thread 'main', and each of its
// messages gets the default token count in its row (issue 14: no manual step).
const { schema } = isolation('migration_from_0_1');
const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
const id = createIdGenerator();
const adapters: PostgresAdapter[] = [];

const [m1, m2, m3] = [id(), id(), id()];
// bob cleared his history in 0.1 (then a per-user floor) and wrote again; carol was erased.
const cleared = id();
const fresh = id();
const floor = id();
const t0 = new Date(Date.UTC(2024, 5, 1, 12, 0, 0, 123));

beforeAll(async () => {
  const schema01 = readFileSync(new URL('./fixtures/schema-0.1.0.sql', import.meta.url), 'utf8');
  await sql.begin(async (tx) => {
    await tx`create schema ${tx(schema)}`;
    await tx`set local search_path to ${tx(schema)}`;
    await tx.unsafe(schema01).simple();
    // What 0.1.0 wrote: messages (one with meta and an idempotency key), a user cleared once, an erased user's floor.
    await tx`
      insert into messages (user_id, id, role, content, meta, created_at, idempotency_key) values
        ('alice', ${m1}, 'user', 'hello', null, ${t0}, 'update-1'),
        ('alice', ${m2}, 'assistant', 'hi there', ${tx.json({ model: 'x', n: [1, null] })}, ${new Date(t0.getTime() + 1000)}, null),
        ('alice', ${m3}, 'tool', '', null, ${new Date(t0.getTime() + 2000)}, null),
        ('bob', ${fresh}, 'user', 'after the clear', null, ${new Date(t0.getTime() + 5000)}, null)`;
    await tx`
      insert into users (user_id, phone, phone_v, subscribed, subscribed_v, history_floor) values
        ('alice', '+10000000001', ${m1}, true, ${m1}, ''),
        ('bob', null, null, false, null, ${cleared}),
        ('carol', null, ${floor}, false, ${floor}, ${floor})`;
  });
});

afterAll(async () => {
  await Promise.all(adapters.map((a) => a.close()));
  await sql.end({ timeout: 1 });
  await cleanupPostgres(databaseUrl(), schema);
});

async function open(): Promise<PostgresAdapter> {
  const adapter = new PostgresAdapter({ url: databaseUrl(), schema, max: 2 });
  adapter.bind(durableConfig());
  await adapter.connect();
  adapters.push(adapter);
  return adapter;
}

describe('a database written by 0.1.0', () => {
  it('the fixture is the 0.1 schema this version still ships as migrations 1-4', () => {
    const fixture = readFileSync(new URL('./fixtures/schema-0.1.0.sql', import.meta.url), 'utf8');
    for (const { file, sql: text } of PostgresAdapter.migrations().slice(0, 4)) expect(fixture, file).toContain(text);
  });

  it('migrates on connect, once, and reads every 0.1 message as thread main with every field', async () => {
    const adapter = await open();
    await open(); // a second process: nothing left to apply
    const versions = await sql`select version from ${sql(`${schema}.schema_migrations`)} order by version`;
    // Every shipped migration.
    expect(versions.map((r) => r.version)).toEqual(PostgresAdapter.migrations().map((m) => Number(m.file.slice(0, 3))));
    expect(await adapter.readHistory('alice', 10)).toEqual({
      messages: [
        // ceil(UTF-8 bytes / 4) + 4, backfilled by migration 6
        { id: m1, role: 'user', content: 'hello', createdAt: t0, thread: 'main', tokens: 6 },
        {
          id: m2,
          role: 'assistant',
          content: 'hi there',
          createdAt: new Date(t0.getTime() + 1000),
          thread: 'main',
          meta: { model: 'x', n: [1, null] },
          tokens: 6,
        },
        { id: m3, role: 'tool', content: '', createdAt: new Date(t0.getTime() + 2000), thread: 'main', tokens: 4 },
      ],
      floor: '',
    });
    expect(await adapter.readHistory('alice', 10, { thread: 'main' })).toEqual(await adapter.readHistory('alice', 10));
    expect(await adapter.readMessage('alice', m2)).toMatchObject({ id: m2, thread: 'main', meta: { model: 'x', n: [1, null] } });
    expect(await adapter.readUser('alice')).toMatchObject({ phone: { value: '+10000000001', id: m1 }, subscribed: { value: true, id: m1 } });
  });

  it('backfills every 0.1 row with the default token count in the column itself (issue 14)', async () => {
    await open();
    const rows = await sql`select id, content, tokens from ${sql(`${schema}.messages`)} where user_id in ('alice', 'bob') order by id`;
    expect(rows.length).toBeGreaterThanOrEqual(4);
    for (const row of rows) expect(row.tokens, row.id as string).toBe(Math.ceil(Buffer.byteLength(row.content as string) / 4) + 4);
    // Multi-byte text counts by its UTF-8 bytes, like defaultTokens: 'héllo 🌍' is 11 bytes.
    const [row] = await sql`select ceil(octet_length('héllo 🌍') / 4.0)::integer + 4 as n`;
    expect(row?.n).toBe(Math.ceil(Buffer.byteLength('héllo 🌍') / 4) + 4);
  });

  it('lists the 0.1 history as thread main with its count and times', async () => {
    const adapter = await open();
    expect(await adapter.listThreads('alice', 20, null)).toEqual({
      threads: [{ id: 'main', title: null, messages: 3, createdAt: t0, updatedAt: new Date(t0.getTime() + 2000), lastId: m3 }],
      cursor: null,
    });
    expect((await adapter.listThreads('bob', 20, null)).threads.map((t) => [t.id, t.messages])).toEqual([['main', 1]]);
    expect(await adapter.listThreads('carol', 20, null)).toEqual({ threads: [], cursor: null });
  });

  it('keeps the 0.1 floors and idempotency keys against replays', async () => {
    const adapter = await open();
    const old: AppendOp = { kind: 'append', user: 'bob', id: m1, thread: 'main', role: 'user', content: 'replayed from before the clear', createdAt: 0 };
    await adapter.write([old]);
    await adapter.write([
      { ...old, id: m2, thread: 'topic' },
      { ...old, user: 'carol' },
    ]);
    expect((await adapter.readHistory('bob', 10)).messages.map((m) => m.content)).toEqual(['after the clear']);
    expect((await adapter.readHistory('bob', 10)).floor).toBe(cleared);
    expect((await adapter.readHistory('bob', 10, { thread: 'topic' })).messages).toEqual([]);
    expect((await adapter.readHistory('carol', 10)).messages).toEqual([]);
    // The key 0.1 stored still names its message.
    const repeat: AppendOp = {
      kind: 'append',
      user: 'alice',
      id: id(),
      thread: 'main',
      role: 'user',
      content: 'hello again',
      createdAt: Date.now(),
      key: 'update-1',
    };
    expect(await adapter.write([repeat])).toEqual([m1]);
  });

  it('takes the new thread ops on the migrated data', async () => {
    const adapter = await open();
    const now = Date.now();
    const topic: AppendOp = { kind: 'append', user: 'alice', id: id(), thread: 'topic-42', role: 'user', content: 'in a topic', createdAt: now };
    const ops: Op[] = [
      topic,
      { kind: 'edit', user: 'alice', id: id(), thread: 'main', target: m1, content: 'hello, edited', updatedAt: t0.getTime() + 10_000 },
      { kind: 'title', user: 'alice', id: id(), thread: 'topic-42', title: 'Haircut on Friday' },
      { kind: 'cut', user: 'alice', id: id(), thread: 'main', from: m3, to: m3 },
    ];
    await adapter.write(ops);
    const main = await adapter.readHistory('alice', 10);
    expect(main.messages.map((m) => m.content)).toEqual(['hello, edited', 'hi there']);
    expect(main.messages[0]?.updatedAt).toEqual(new Date(t0.getTime() + 10_000));
    expect(main.cuts).toEqual([[m3, m3]]);
    await adapter.write([{ kind: 'append', user: 'alice', id: m3, thread: 'main', role: 'tool', content: '', createdAt: 0 }]);
    expect((await adapter.readHistory('alice', 10)).messages).toHaveLength(2);
    const { threads } = await adapter.listThreads('alice', 20, null);
    expect(threads.map((t) => [t.id, t.title, t.messages])).toEqual([
      ['topic-42', 'Haircut on Friday', 1],
      ['main', null, 2],
    ]);
    await adapter.write([{ kind: 'clear', user: 'alice', id: id(), thread: 'main' }]);
    expect((await adapter.readHistory('alice', 10)).messages).toEqual([]);
    expect((await adapter.readHistory('alice', 10, { thread: 'topic-42' })).messages.map((m) => m.content)).toEqual(['in a topic']);
    expect((await adapter.listThreads('alice', 20, null)).threads.map((t) => [t.id, t.messages])).toEqual([['topic-42', 1]]);
  });
});
