import { expectHot, userIds, warm, type Ctx } from './context.js';
import { compareThroughput } from './harness.js';
import { CONTENT, seedMessages } from './raw.js';

const HISTORY = 50;

/** Throughput with 100 concurrent callers, each call for one of 100 users, against the raw client doing the same. */
export async function concurrency(ctx: Ctx): Promise<void> {
  const { svc, plan, report, raw } = ctx;
  const section = `throughput, ${plan.throughput.concurrency} concurrent callers`;
  const users = userIds('c', plan.hotUsers);
  const user = (i: number) => users[i % users.length]!;
  const rawKey = (i: number) => svc.key('conc', user(i));
  const through = await svc.store('cwt', 'redis+postgres');
  const behind = await svc.store('cwb', 'redis+postgres', { writeMode: 'write-behind' });
  for (const name of ['cwt', 'cwb']) await seedMessages(svc.sql, `${svc.schema(name)}.messages`, users, HISTORY);
  await Promise.all([warm(through, users), warm(behind, users)]);
  await expectHot(ctx, 'cwt', users, HISTORY);
  await expectHot(ctx, 'cwb', users, HISTORY);
  for (const [i, u] of users.entries()) await raw.copyList(rawKey(i), await through.getHistory(u));
  const target = { op: '>=', value: 1.0 } as const;

  ctx.progress('throughput getHistory');
  await warm(through, users); // served from L1 from here on (the first read's refill of Redis invalidated it once)
  report.throughput(
    section,
    'getHistory, hot: L1',
    await compareThroughput(
      [
        { label: 'store', call: (i) => through.getHistory(user(i)) },
        { label: 'LRANGE + JSON.parse', call: (i) => raw.read(rawKey(i), HISTORY) },
      ],
      plan.throughput,
    ),
    { op: '>=', value: 3 },
    'the store serves from process memory (L1, on by default with Redis); raw: the Redis read it saves',
  );
  const noL1 = await svc.store('cnol1', 'redis+postgres', { l1: false });
  await seedMessages(svc.sql, `${svc.schema('cnol1')}.messages`, users, HISTORY);
  await warm(noL1, users);
  await expectHot(ctx, 'cnol1', users, HISTORY);
  ctx.progress('throughput getHistory, l1: false');
  report.throughput(
    section,
    'getHistory, Redis hit, l1: false',
    await compareThroughput(
      [
        { label: 'store', call: (i) => noL1.getHistory(user(i)) },
        { label: 'LRANGE + JSON.parse', call: (i) => raw.read(rawKey(i), HISTORY) },
      ],
      plan.throughput,
    ),
    target,
  );
  await noL1.close();
  ctx.progress('throughput addMemory write-behind');
  report.throughput(
    section,
    'addMemory, write-behind',
    await compareThroughput(
      [
        { label: 'store', call: (i) => behind.addMemory(user(i), 'user', CONTENT) },
        { label: 'MULTI RPUSH+LTRIM+PEXPIRE', call: (i) => raw.append(rawKey(i), HISTORY) },
      ],
      plan.throughput,
    ),
    target,
  );
  ctx.progress('throughput addMemory write-through');
  report.throughput(
    section,
    'addMemory, write-through',
    await compareThroughput(
      [
        { label: 'store', call: (i) => through.addMemory(user(i), 'user', CONTENT) },
        { label: 'MULTI + INSERT in parallel', call: (i) => raw.appendBoth(rawKey(i), user(i), HISTORY) },
      ],
      plan.throughputDurable,
    ),
    target,
    `both sides use a PostgreSQL pool of 10 connections; each INSERT commits on its own`,
  );
  await Promise.all([through.close(), behind.close()]);
}
