import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter } from '../src/index.js';
import { createIdGenerator } from '../src/model/ids.js';
import { after, type AppendOp, type Op } from '../src/model/ops.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';
import { durableConfig } from './helpers/stores.js';

// An append and a removal of the same user (clear, drop, cut, erasure, retention) on two
// connections at once. In READ COMMITTED a statement reads as of its start: an append that read
// the floor before the clear committed, and a clear whose delete began before the append
// committed, left a row below the floor (readers hide it; counts, exports and the crash checker
// saw it). Whatever the interleaving, no row may stay at or below a floor or inside a cut, and
// every thread's count must match its rows.
const { schema } = isolation('postgres_floor_races');
const config = durableConfig();
const id = createIdGenerator();
let pg: PostgresAdapter;
let sql: postgres.Sql;

beforeAll(async () => {
  pg = new PostgresAdapter({ url: databaseUrl(), schema, max: 12 });
  pg.bind(config);
  await pg.connect();
  sql = postgres(databaseUrl(), { onnotice: () => {}, max: 4 });
});

afterAll(async () => {
  await sql?.end({ timeout: 1 });
  await pg?.close();
  await cleanupPostgres(databaseUrl(), schema);
});

const t = (table: string) => sql(`${schema}.${table}`);

function append(user: string, thread: string, at = id()): AppendOp {
  return { kind: 'append', user, id: at, thread, role: 'user', content: `m ${at}`, createdAt: Date.now() };
}

/**
 * What is wrong in storage for `users`: rows at or below a floor or inside a cut, summaries at or
 * below a floor, titles older than the user's erasure, miscounted threads.
 */
async function wrongs(users: string[]): Promise<string[]> {
  const below = await sql`
    select m.user_id, m.thread, m.id from ${t('messages')} m
    left join ${t('users')} u on u.user_id = m.user_id
    left join ${t('threads')} h on h.user_id = m.user_id and h.thread = m.thread
    where m.user_id = any(${users}) and (m.id <= coalesce(u.history_floor, '') or m.id <= coalesce(h.floor, '')
      or exists (select 1 from ${t('cuts')} c where c.user_id = m.user_id and c.thread = m.thread and m.id between c.from_id and c.to_id))`;
  const summaries = await sql`
    select s.user_id, s.thread, s.summary_v from ${t('summaries')} s
    left join ${t('users')} u on u.user_id = s.user_id
    left join ${t('threads')} h on h.user_id = s.user_id and h.thread = s.thread
    where s.user_id = any(${users}) and s.text is not null
      and (s.summary_v <= coalesce(u.history_floor, '') or s.summary_v <= coalesce(h.floor, ''))`;
  const titles = await sql`
    select h.user_id, h.thread, h.title_v from ${t('threads')} h join ${t('users')} u on u.user_id = h.user_id
    where h.user_id = any(${users}) and h.title is not null and h.title_v <= u.history_floor`;
  const counts = await sql`
    select h.user_id, h.thread, h.messages,
      (select count(*)::int from ${t('messages')} m where m.user_id = h.user_id and m.thread = h.thread) as rows
    from ${t('threads')} h where h.user_id = any(${users})`;
  return [
    ...below.map((r) => `message ${r.user_id}/${r.thread}/${r.id} stored at or below a floor or inside a cut`),
    ...summaries.map((r) => `summary ${r.user_id}/${r.thread}/${r.summary_v} stored at or below a floor`),
    ...titles.map((r) => `title ${r.user_id}/${r.thread}/${r.title_v} stored at or below the erasure`),
    ...counts.filter((r) => r.messages !== r.rows).map((r) => `thread ${r.user_id}/${r.thread} counts ${r.messages}, holds ${r.rows}`),
  ];
}

/** Sessions of this file's schema waiting for a lock (row or advisory). */
async function waiting(): Promise<number> {
  const [row] = await sql`
    select count(*)::int as n from pg_stat_activity
    where wait_event_type = 'Lock' and pid <> pg_backend_pid() and position(${schema} in query) > 0`;
  return row?.n as number;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`never happened: ${what}`);
}

function track(work: Promise<unknown>): { done: boolean; result: Promise<unknown> } {
  const state = { done: false, result: work };
  state.result = work.finally(() => {
    state.done = true;
  });
  return state;
}

/**
 * Runs `first`, then `second`, while another transaction holds the thread's row: each goes as far
 * as it can (an append inserts its row and waits to count it; a removal waits where it must),
 * and both go on together when it commits. Two interleavings the race left rows in.
 */
async function interleave(user: string, thread: string, first: () => Promise<unknown>, second: () => Promise<unknown>): Promise<void> {
  const blocker = await sql.reserve();
  try {
    await blocker`begin`;
    await blocker`select 1 from ${t('threads')} where user_id = ${user} and thread = ${thread} for update`;
    const one = track(first());
    await until(async () => one.done || (await waiting()) >= 1, 'the first write waits or ends');
    const before = one.done ? 0 : 1;
    const two = track(second());
    await until(async () => two.done || (await waiting()) >= before + 1, 'the second write waits or ends');
    await blocker`commit`;
    await Promise.all([one.result, two.result]);
  } finally {
    blocker.release();
  }
}

type Removal = 'clear' | 'dropThread' | 'cut' | 'delete' | 'retention';

/**
 * A thread with one message, then an append (`batch`: two, through the batch statement) whose
 * ids the removal covers, racing it in the order given.
 */
async function race(removal: Removal, appendFirst: boolean, batch: boolean): Promise<string[]> {
  const user = `r_${removal}_${appendFirst ? 'a' : 'r'}_${batch ? 'b' : 's'}_${process.pid}`;
  const thread = 't';
  // Retention keeps the newest message: the racing appends are older than the ones it cuts below.
  const early = removal === 'retention' ? [append(user, thread), append(user, thread)] : [];
  const seed = [append(user, thread), append(user, thread)];
  const late = removal === 'retention' ? early : [append(user, thread), append(user, thread)];
  await pg.write(removal === 'retention' ? seed : seed.slice(0, 1));
  const appends = batch ? late : late.slice(0, 1);
  const op: Op | undefined =
    removal === 'cut'
      ? { kind: 'cut', user, id: id(), thread, from: after((seed[0] as AppendOp).id), to: id() }
      : removal === 'delete'
        ? { kind: 'delete', user, id: id() }
        : removal === 'retention'
          ? undefined
          : { kind: removal, user, id: id(), thread };
  const write = () => pg.write(appends);
  const remove = () => (op ? pg.write([op]) : pg.enforceRetention({ users: [user], keepLast: 1, batch: 100 }));
  await (appendFirst ? interleave(user, thread, write, remove) : interleave(user, thread, remove, write));
  return wrongs([user]);
}

describe('PostgreSQL: an append racing a removal of the same user', () => {
  const removals: Removal[] = ['clear', 'dropThread', 'cut', 'delete', 'retention'];
  const cases = removals.flatMap((removal) => [true, false].flatMap((appendFirst) => [false, true].map((batch) => [removal, appendFirst, batch] as const)));

  it.each(cases)('%s, append first: %s, batch: %s: nothing stays below the floor or inside the cut', async (removal, appendFirst, batch) => {
    expect(await race(removal, appendFirst, batch)).toEqual([]);
  });

  it('many appends, batches, summaries, titles and removals at once leave nothing below a floor or inside a cut', async () => {
    const users = Array.from({ length: 8 }, (_, i) => `many_${i}_${process.pid}`);
    for (let round = 0; round < 8; round++) {
      const work: Promise<unknown>[] = [];
      for (const [i, user] of users.entries()) {
        const thread = `t${round}`;
        // Half the threads are new: no row to read a floor from yet.
        if (i % 2 === 0) await pg.write([append(user, thread)]);
        // Every write below is older than the removal (made when it is sent).
        const older = Array.from({ length: 8 }, () => append(user, thread));
        const summary: Op = { kind: 'summary', user, id: id(), thread, text: `sum ${round}`, covers: (older[5] as AppendOp).id };
        const title: Op = { kind: 'title', user, id: id(), thread, title: `title ${round}` };
        const kinds = ['clear', 'dropThread', 'cut', 'delete', 'retention'] as const;
        const kind = kinds[(round + i) % kinds.length] as (typeof kinds)[number];
        const remove = (): Promise<unknown> => {
          if (kind === 'retention') return pg.enforceRetention({ users: [user], keepLast: 2, batch: 100 });
          if (kind === 'cut') return pg.write([{ kind, user, id: id(), thread, from: (older[0] as AppendOp).id, to: (older[5] as AppendOp).id }]);
          if (kind === 'delete') return pg.write([{ kind, user, id: id() }]);
          return pg.write([{ kind, user, id: id(), thread }]);
        };
        work.push(
          ...older.slice(0, 2).map((op) => pg.write([op])),
          pg.write(older.slice(2, 4)),
          remove(),
          pg.write([summary]),
          pg.write([title]),
          ...older.slice(4, 6).map((op) => pg.write([op])),
          pg.write(older.slice(6)),
        );
      }
      await Promise.all(work);
      expect(await wrongs(users), `round ${round}`).toEqual([]);
    }
  });
});
