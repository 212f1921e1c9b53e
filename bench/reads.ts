import { callsPerVariant } from './config.js';
import { expectHot, userIds, warm, type Ctx } from './context.js';
import { compareLatency } from './harness.js';
import { seedMessages } from './raw.js';

const SECTION = 'getHistory / getEmailSubscribers (concurrency 1)';
const HISTORY = 50;

export async function reads(ctx: Ctx): Promise<void> {
  const { svc, plan, report, raw } = ctx;
  const store = await svc.store('reads', 'redis+postgres');
  const hot = userIds('hot', plan.hotUsers);
  const rawKey = (i: number) => svc.key('reads', hot[i % hot.length]!);

  // Redis hit: the store's hot copies against raw lists holding the very same items.
  await seedMessages(svc.sql, `${svc.schema('reads')}.messages`, hot, HISTORY);
  await warm(store, hot);
  await expectHot(ctx, 'reads', hot, HISTORY);
  for (const [i, user] of hot.entries()) await raw.copyList(rawKey(i), await store.getHistory(user));
  ctx.progress('getHistory, Redis hit');
  report.latency(
    SECTION,
    'getHistory, Redis hit (50 of 50)',
    await compareLatency(
      [
        { label: 'store', call: (i) => store.getHistory(hot[i % hot.length]!) },
        { label: 'LRANGE -50 -1 + JSON.parse', call: (i) => raw.read(rawKey(i), HISTORY) },
      ],
      plan.fast,
    ),
    { op: '<=', value: 1.1 },
  );

  // Issue 14: a budget read of the same hot copies costs the sum of the stored counts and the unit walk, no more reads.
  ctx.progress('getHistory({ maxTokens }), Redis hit');
  report.latency(
    SECTION,
    'getHistory({ maxTokens, limit: 50 }), Redis hit, all 50 fit',
    await compareLatency(
      [
        { label: 'store, budget', call: (i) => expectLength(store.getHistory(hot[i % hot.length]!, { maxTokens: 1_000_000, limit: HISTORY }), HISTORY) },
        { label: 'store, plain getHistory', call: (i) => store.getHistory(hot[i % hot.length]!) },
      ],
      plan.fast,
    ),
    { op: '<=', value: 1.2 },
    'the same 50 hot messages with a budget that fits them all: withinBudget over the stored counts, no second read',
  );

  // Redis miss: every call reads a user nobody read before (50 messages in PostgreSQL, none in Redis).
  const cold = callsPerVariant(plan.cold);
  const [coldStore, coldRaw, coldFloor] = ['cs', 'cr', 'cf'].map((prefix) => userIds(prefix, cold)) as [string[], string[], string[]];
  await seedMessages(svc.sql, `${svc.schema('reads')}.messages`, coldStore, HISTORY);
  await seedMessages(svc.sql, `${raw.schema}.messages`, [...coldRaw, ...coldFloor], HISTORY);
  await svc.sql`vacuum analyze ${svc.sql(`${svc.schema('reads')}.messages`)}`;
  await svc.sql`vacuum analyze ${svc.sql(`${raw.schema}.messages`)}`;
  ctx.progress('getHistory, Redis miss');
  const [miss, select, floor] = await compareLatency(
    [
      { label: 'store', call: (i) => expectLength(store.getHistory(coldStore[i]!), HISTORY) },
      { label: 'SELECT .. ORDER BY id DESC LIMIT 50', call: (i) => raw.select(coldRaw[i]!, HISTORY) },
      { label: 'LRANGE, SELECT, RPUSH fill', call: (i) => raw.missAndFill(svc.key('cold', i), coldFloor[i]!, HISTORY) },
    ],
    plan.cold,
  );
  report.latency(
    SECTION,
    'getHistory, Redis miss -> PostgreSQL + rewarm',
    [miss!, select!],
    { op: '<=', value: 1.3 },
    'store: a Redis round trip that misses, the PostgreSQL read, then a fill it does not wait for; raw: the SELECT alone',
  );
  report.latency(
    SECTION,
    'getHistory, Redis miss vs the raw miss path',
    [miss!, floor!],
    undefined,
    'raw doing what a cache-aside miss physically needs: LRANGE (empty), the SELECT, then RPUSH+PEXPIRE of the rows, not awaited',
  );

  // PostgreSQL only: a store without Redis against the raw SELECT of the same users.
  const pgStore = await svc.store('readspg', 'postgres');
  await seedMessages(svc.sql, `${svc.schema('readspg')}.messages`, hot, HISTORY);
  await seedMessages(svc.sql, `${raw.schema}.messages`, hot, HISTORY);
  ctx.progress('getHistory, PostgreSQL only');
  report.latency(
    SECTION,
    'getHistory, PostgreSQL only (no Redis)',
    await compareLatency(
      [
        { label: 'store', call: (i) => pgStore.getHistory(hot[i % hot.length]!) },
        { label: 'SELECT .. ORDER BY id DESC LIMIT 50', call: (i) => raw.select(hot[i % hot.length]!, HISTORY) },
      ],
      plan.pg,
    ),
  );
  await pgStore.close();

  // 10k subscribers: in PostgreSQL, then the store's first read installs them in Redis.
  const subscribers = userIds('sub', plan.subscribers);
  await svc.sql`insert into ${svc.sql(`${svc.schema('reads')}.users`)} (user_id, subscribed, subscribed_v)
    select u, true, lpad('1', 26, '0') from unnest(${subscribers}::text[]) u`;
  const subsKey = svc.key('subs');
  for (let i = 0; i < subscribers.length; i += 1000) await svc.redis.sadd(subsKey, ...subscribers.slice(i, i + 1000));
  if ((await store.getEmailSubscribers()).length !== subscribers.length) throw new Error('getEmailSubscribers: wrong count');
  await new Promise((resolve) => setTimeout(resolve, 100));
  ctx.progress('getEmailSubscribers');
  report.latency(
    SECTION,
    `getEmailSubscribers, ${subscribers.length / 1000}k, Redis hit`,
    await compareLatency(
      [
        { label: 'store', call: () => expectLength(store.getEmailSubscribers(), subscribers.length) },
        { label: 'SMEMBERS', call: () => raw.members(subsKey) },
      ],
      plan.heavy,
    ),
  );
  await store.close();
}

async function expectLength<T>(work: Promise<readonly T[]>, length: number): Promise<readonly T[]> {
  const got = await work;
  if (got.length !== length) throw new Error(`expected ${length} items, got ${got.length}`);
  return got;
}
