import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore, type WriteMode } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Two stores on the same servers (as two bot processes would be) editing, deleting and truncating
// the same user's messages at once, with appends from both: every reader (each store's hot copy,
// a cold read, PostgreSQL) ends with the same state, each append once, the newest edit winning.

const names = isolation('conv_two');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

function store(writeMode: WriteMode): TieredStore {
  return new TieredStore({
    logger: false,
    writeMode,
    historyLimit: 20,
    redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
    postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
  });
}

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it('concurrent edits, deletes, truncations and appends from two stores converge everywhere', async () => {
    const [a, b] = [store(writeMode), store(writeMode)];
    try {
      const user = `two_${writeMode}`;
      const seed = [];
      for (let i = 0; i < 12; i++) seed.push(await a.addMemory(user, 'user', `s${i}`, { thread: i % 2 === 0 ? 'x' : 'y' }));
      await Promise.all([a.getHistory(user, { thread: 'x' }), b.getHistory(user, { thread: 'y' })]);
      const x = seed.filter((m) => m.thread === 'x');
      const y = seed.filter((m) => m.thread === 'y');
      const results = await Promise.all([
        // The same message edited by both: one edit wins, the same one everywhere.
        ...Array.from({ length: 6 }, (_, k) => (k % 2 === 0 ? a : b).updateMessage(user, x[1]!.id, { content: `edit ${k}` })),
        a.deleteMessage(user, x[0]!.id),
        b.deleteMessage(user, x[0]!.id),
        b.truncateAfter(user, y[2]!.id),
        ...Array.from({ length: 10 }, (_, k) => (k % 2 === 0 ? a : b).addMemory(user, 'user', `n${k}`, { thread: 'x' })),
        a.setThreadTitle(user, 'y', 'from a'),
        b.setThreadTitle(user, 'y', 'from b'),
      ]);
      // Both deletes may find the message (they race); at least one does.
      expect(results.slice(6, 8)).toContain(true);
      await a.syncNow();
      await b.syncNow();

      const cold = store(writeMode);
      try {
        const view = async (s: TieredStore) => ({
          x: (await s.getHistory(user, { thread: 'x', limit: 100 })).map((m) => m.content),
          y: (await s.getHistory(user, { thread: 'y', limit: 100 })).map((m) => m.content),
          hotX: (await s.getHistory(user, { thread: 'x' })).map((m) => m.content),
          titles: (await s.listThreads(user)).threads.map((t) => [t.id, t.title, t.messages]),
        });
        const seen = await view(a);
        expect(await view(b)).toEqual(seen);
        expect(await view(cold)).toEqual(seen);
        const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
        try {
          const rows = await sql`select thread, content from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
          expect(rows.filter((r) => r.thread === 'x').map((r) => r.content)).toEqual(seen.x);
          expect(rows.filter((r) => r.thread === 'y').map((r) => r.content)).toEqual(seen.y);
        } finally {
          await sql.end();
        }
        // The edits: exactly one of them, and not the original.
        const edited = seen.x.filter((c) => c.startsWith('edit '));
        expect(edited).toHaveLength(1);
        expect(seen.x).not.toContain('s0');
        expect(seen.x).not.toContain('s2');
        // Each append once.
        for (let k = 0; k < 10; k++) expect(seen.x.filter((c) => c === `n${k}`)).toHaveLength(1);
        // The truncation removed y's messages newer than s5 that existed when it ran.
        expect(seen.y).toEqual(['s1', 's3', 's5']);
        expect(['from a', 'from b']).toContain(seen.titles.find((t) => t[0] === 'y')?.[1]);
      } finally {
        await cold.close();
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
