import type { TieredStore, WriteMode } from '../src/index.js';
import { expectHot, userIds, warm, type Ctx } from './context.js';
import { compareLatency } from './harness.js';
import { Naive } from './naive.js';
import { CONTENT, seedMessages } from './raw.js';

const SECTION = 'append cost vs history length (concurrency 1)';
const LENGTHS = [1000, 50] as const;

/** Appends to users whose history (hot list in Redis and rows in PostgreSQL) holds 1,000 vs 50 messages. */
export async function length(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const users = userIds('len', plan.lengthUsers);
  const user = (i: number) => users[i % users.length]!;
  for (const mode of ['write-through', 'write-behind'] as const) {
    const [long, short] = await Promise.all(LENGTHS.map((n) => lengthStore(ctx, mode, n, users)));
    ctx.progress(`addMemory ${mode}, history 1000 vs 50`);
    report.latency(
      SECTION,
      `addMemory ${mode}, history 1,000 vs 50`,
      await compareLatency(
        [
          { label: 'store, 1,000 messages', call: (i) => long!.addMemory(user(i), 'user', CONTENT) },
          { label: 'store, 50 messages', call: (i) => short!.addMemory(user(i), 'user', CONTENT) },
        ],
        mode === 'write-through' ? plan.pg : plan.fast,
      ),
      { op: '<=', value: 1.1 },
    );
    await Promise.all([long!.close(), short!.close()]);
  }

  // The original bot's JSON array, for contrast: every append rewrites the whole history.
  const naive = new Naive(svc.redis);
  const keys = LENGTHS.map((n) => users.map((u) => svc.key('json', n, u)));
  for (const [k, n] of LENGTHS.entries()) for (const key of keys[k]!) await naive.seedJson(key, n);
  ctx.progress('original JSON array, history 1000 vs 50');
  report.latency(
    SECTION,
    'original bot append (GET+parse+push+SET), 1,000 vs 50',
    await compareLatency(
      LENGTHS.map((n, k) => ({ label: `JSON array, ${n} messages`, call: (i: number) => naive.jsonAppend(keys[k]![i % users.length]!, n) })),
      plan.fast,
    ),
    undefined,
    'the naive design for contrast: its append cost grows with the history',
  );
}

/** A store keeping `n` messages hot, its users holding exactly `n` (in PostgreSQL and in Redis). */
async function lengthStore(ctx: Ctx, mode: WriteMode, n: number, users: readonly string[]): Promise<TieredStore> {
  const name = `len${n}${mode === 'write-through' ? 'wt' : 'wb'}`;
  const store = await ctx.svc.store(name, 'redis+postgres', { historyLimit: n, writeMode: mode });
  await seedMessages(ctx.svc.sql, `${ctx.svc.schema(name)}.messages`, users, n);
  await warm(store, users);
  await expectHot(ctx, name, users, n);
  return store;
}
