import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAdapter, PostgresAdapter } from '../src/index.js';
import type { StorageAdapter, ThreadRecord } from '../src/adapters/contract.js';
import { createIdGenerator } from '../src/model/ids.js';
import { after, type AppendOp, type Op } from '../src/model/ops.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';
import { durableConfig } from './helpers/stores.js';

// PostgreSQL's thread bookkeeping (counts, times, pages, drafts) against the reference fold of
// MemoryAdapter, on batches as the syncer sends them: many users, every kind of op, any order.
const { schema } = isolation('postgres_threads');
const config = durableConfig();
const id = createIdGenerator();
let pg: PostgresAdapter;

beforeAll(async () => {
  pg = new PostgresAdapter({ url: databaseUrl(), schema });
  pg.bind(config);
  await pg.connect();
});

afterAll(async () => {
  await pg.close();
  await cleanupPostgres(databaseUrl(), schema);
});

function memory(): MemoryAdapter {
  const adapter = new MemoryAdapter();
  adapter.bind(config);
  return adapter;
}

async function allThreads(adapter: StorageAdapter, user: string, pageSize: number): Promise<ThreadRecord[]> {
  const out: ThreadRecord[] = [];
  let cursor: string | null = null;
  do {
    const page = await adapter.listThreads(user, pageSize, cursor);
    out.push(...page.threads);
    cursor = page.cursor;
  } while (cursor !== null);
  return out;
}

/** A random journal of thread ops for `users`, with replays and out-of-order removals. */
function journal(users: string[], seed: number): Op[] {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const threads = ['main', 'a', 'b', 'c'];
  const appends: AppendOp[] = [];
  const ops: Op[] = [];
  const t0 = Date.UTC(2025, 0, 1);
  for (let i = 0; i < 400; i++) {
    const user = pick(users);
    const thread = pick(threads);
    const roll = random();
    const mine = appends.filter((a) => a.user === user);
    if (roll < 0.55 || mine.length === 0) {
      const op: AppendOp = { kind: 'append', user, id: id(), thread, role: 'user', content: `m${i}`, createdAt: t0 + i * 1000 };
      if (random() < 0.1) op.status = 'streaming';
      appends.push(op);
      ops.push(op);
    } else if (roll < 0.65) {
      const target = pick(mine);
      const edit: Op = { kind: 'edit', user, id: id(), thread: target.thread, target: target.id, content: `edited ${i}` };
      if (random() < 0.5) edit.updatedAt = t0 + i * 1000 + 500;
      ops.push(edit);
    } else if (roll < 0.72) {
      const target = pick(mine);
      ops.push({ kind: 'cut', user, id: id(), thread: target.thread, from: target.id, to: target.id });
    } else if (roll < 0.76) {
      const target = pick(mine);
      ops.push({ kind: 'cut', user, id: id(), thread: target.thread, from: after(target.id), to: id() });
    } else if (roll < 0.8) {
      ops.push({ kind: 'clear', user, id: id(), thread });
    } else if (roll < 0.88) {
      ops.push({ kind: 'title', user, id: id(), thread, title: random() < 0.8 ? `title ${i}` : null });
    } else if (roll < 0.92) {
      ops.push({ kind: 'dropThread', user, id: id(), thread });
    } else if (roll < 0.93) {
      ops.push({ kind: 'delete', user, id: id() });
    } else {
      ops.push(pick(mine)); // a replay
    }
  }
  return ops;
}

describe('PostgresAdapter threads', () => {
  it('converges to the reference fold on mixed batches of many users, in any order and batch size', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const users = [0, 1, 2, 3, 4].map((n) => `fold_${seed}_${n}_${process.pid}`);
      const ops = journal(users, seed);
      const reference = memory();
      for (const op of ops) await reference.write([op]);
      // The syncer's way: batches of mixed ops, then the whole journal replayed shuffled, in one batch and one by one.
      for (let i = 0; i < ops.length; i += 37) await pg.write(ops.slice(i, i + 37));
      const shuffled = [...ops].sort(() => Math.random() - 0.5);
      await pg.write(shuffled);
      for (const op of shuffled.slice(0, 60)) await pg.write([op]);
      for (const user of users) {
        for (const thread of ['main', 'a', 'b', 'c']) {
          const [mine, theirs] = await Promise.all([pg.readHistory(user, 1000, { thread }), reference.readHistory(user, 1000, { thread })]);
          expect(mine.messages, `${user} ${thread}`).toEqual(theirs.messages);
          expect(mine.floor, `${user} ${thread} floor`).toBe(theirs.floor);
        }
        const strip = (list: ThreadRecord[]) => list.map((t) => [t.id, t.title, t.messages, t.lastId, t.createdAt.getTime()]).sort();
        expect(strip(await allThreads(pg, user, 2)), user).toEqual(strip(await allThreads(reference, user, 100)));
      }
    }
  });

  it('pages through ties in updated_at once each, by thread id', async () => {
    const user = `ties_${process.pid}`;
    const at = Date.UTC(2025, 0, 1);
    const ops: Op[] = [];
    for (let i = 0; i < 45; i++)
      ops.push({ kind: 'append', user, id: id(), thread: `t${String(i % 15).padStart(2, '0')}`, role: 'user', content: 'x', createdAt: at });
    await pg.write(ops);
    const pages = await allThreads(pg, user, 4);
    expect(pages.map((t) => t.id)).toEqual(Array.from({ length: 15 }, (_, i) => `t${String(i).padStart(2, '0')}`));
    expect(pages.every((t) => t.messages === 3 && t.updatedAt.getTime() === at)).toBe(true);
  });

  it('keeps counts and first and last ids right through cuts and retention', async () => {
    const user = `counts_${process.pid}`;
    const t0 = Date.UTC(2025, 0, 1);
    const ms = Array.from(
      { length: 6 },
      (_, i): AppendOp => ({ kind: 'append', user, id: id(), thread: 't', role: 'user', content: `${i}`, createdAt: t0 + i * 1000 }),
    );
    for (const m of ms) await pg.write([m]);
    const record = async () => (await pg.listThreads(user, 10, null)).threads[0];
    expect(await record()).toMatchObject({ messages: 6, lastId: ms[5]!.id, createdAt: new Date(t0) });
    await pg.write([{ kind: 'cut', user, id: id(), thread: 't', from: ms[0]!.id, to: ms[0]!.id }]);
    await pg.write([{ kind: 'cut', user, id: id(), thread: 't', from: after(ms[3]!.id), to: id() }]);
    expect(await record()).toMatchObject({ messages: 3, lastId: ms[3]!.id, createdAt: new Date(t0 + 1000) });
    expect(await pg.enforceRetention({ users: [user], keepLast: 1, batch: 100 })).toBe(2);
    expect(await record()).toMatchObject({ messages: 1, lastId: ms[3]!.id, createdAt: new Date(t0 + 3000) });
  });

  it('finds drafts left streaming, oldest first, like MemoryAdapter', async () => {
    const user = `drafts_${process.pid}`;
    const reference = memory();
    const old = Date.now() - 3_600_000;
    const draft = (minutes: number, status?: 'streaming' | 'aborted'): AppendOp => {
      const op: AppendOp = { kind: 'append', user, id: id(), thread: 'd', role: 'assistant', content: '', createdAt: old + minutes * 60_000 };
      if (status) op.status = status;
      return op;
    };
    const [newer, older, done, aborted, fresh] = [draft(2, 'streaming'), draft(1, 'streaming'), draft(0), draft(0, 'aborted'), draft(120, 'streaming')];
    const finished = { kind: 'edit', user, id: id(), thread: 'd', target: newer.id, content: 'finished' } as const;
    for (const adapter of [pg, reference]) await adapter.write([newer, older, done, aborted, fresh]);
    const before = new Date(old + 60 * 60_000);
    const mine = (list: { user: string; message: { id: string } }[]) => list.filter((d) => d.user === user).map((d) => d.message.id);
    expect(mine(await pg.streamingDrafts(before, 100_000))).toEqual([older.id, newer.id]);
    expect(mine(await reference.streamingDrafts(before, 100_000))).toEqual([older.id, newer.id]);
    for (const adapter of [pg, reference]) await adapter.write([finished]);
    expect(mine(await pg.streamingDrafts(before, 100_000))).toEqual([older.id]);
    expect(mine(await reference.streamingDrafts(before, 100_000))).toEqual([older.id]);
    expect((await pg.streamingDrafts(before, 100_000)).find((d) => d.message.id === older.id)?.message).toEqual(await reference.readMessage(user, older.id));
  });
});
