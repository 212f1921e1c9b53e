import { performance } from 'node:perf_hooks';
import { userIds, type Ctx } from './context.js';
import { burst } from './harness.js';
import { rate } from './report.js';
import { CONTENT, rawId } from './raw.js';

const SECTION = 'syncNow: draining pending write-behind messages to PostgreSQL';

interface Row {
  user_id: string;
  id: string;
  role: string;
  content: string;
  meta: unknown;
  created_at: Date;
}

/**
 * Write-behind writes N messages (untimed but reported), then one timed syncNow moves them all.
 * Baseline: the same kind of rows INSERTed one at a time (autocommit) into the same kind of table,
 * timed on a sample (half before the drain with rows of the same shape, half after with rows the
 * drain wrote) and extrapolated to N.
 */
export async function sync(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const { messages, users: userCount, rowByRowSample } = plan.sync;
  const users = userIds('s', userCount);
  const store = await svc.store('sync', 'redis+postgres', { writeMode: 'write-behind' });
  const table = `${svc.schema('sync')}.messages`;

  ctx.progress(`write-behind: ${messages} messages`);
  let started = performance.now();
  await burst((i) => store.addMemory(users[i % userCount]!, 'user', CONTENT), 0, messages, 100, []);
  const writeSeconds = (performance.now() - started) / 1000;
  const pendingBefore = store.health().pending;

  const half = Math.floor(rowByRowSample / 2);
  const shaped: Row[] = Array.from({ length: half }, (_, i) => ({
    user_id: users[i % userCount]!,
    id: rawId(),
    role: 'user',
    content: CONTENT,
    meta: null,
    created_at: new Date(),
  }));
  let rowSeconds = await rowByRow(ctx, shaped);

  ctx.progress('syncNow');
  started = performance.now();
  const result = await store.syncNow();
  const syncSeconds = (performance.now() - started) / 1000;
  const [{ count }] = (await svc.sql`select count(*)::int as count from ${svc.sql(table)}`) as unknown as [{ count: number }];
  if (result.messages !== messages || count !== messages || result.pending !== 0) {
    throw new Error(`syncNow moved ${result.messages} messages (${count} rows, ${result.pending} pending); expected ${messages}`);
  }
  const drained = (await svc.sql`select user_id, id, role, content, meta, created_at from ${svc.sql(table)}
    order by random() limit ${rowByRowSample - half}`) as unknown as Row[];
  rowSeconds += await rowByRow(ctx, drained);

  const syncRate = messages / syncSeconds;
  const rowRate = rowByRowSample / rowSeconds;
  const extrapolated = messages / rowRate;
  report.extra.sync = {
    messages,
    users: userCount,
    pendingBefore,
    writeSeconds,
    writeRate: messages / writeSeconds,
    syncSeconds,
    syncRate,
    result,
    rowByRow: { sample: rowByRowSample, seconds: rowSeconds, rate: rowRate, extrapolatedSeconds: extrapolated },
  };
  report.add({
    section: SECTION,
    operation: `syncNow, ${messages / 1000}k messages of ${userCount / 1000}k users`,
    ours: { label: 'syncNow', text: `${rate(syncRate)} msg/s (${syncSeconds.toFixed(2)} s)` },
    baseline: { label: 'row-by-row INSERT', text: `${rate(rowRate)} msg/s (~${extrapolated.toFixed(0)} s)` },
    ratio: syncRate / rowRate,
    target: { op: '>=', value: 20 },
    note: `row-by-row timed on ${rowByRowSample} rows (half before, half after the drain) and extrapolated to ${messages}; ratio is the speed-up`,
  });
  report.add({
    section: SECTION,
    operation: 'syncNow rate vs 100k msg/s',
    ours: { label: 'syncNow', text: `${rate(syncRate)} msg/s` },
    baseline: { label: 'target', text: '100k msg/s' },
    ratio: syncRate / 100_000,
    target: { op: '>=', value: 1 },
  });
  report.add({
    section: SECTION,
    operation: `write-behind fill before the drain`,
    ours: { label: 'addMemory x100 callers', text: `${rate(messages / writeSeconds)} msg/s` },
    note: `${messages} write-behind appends by 100 concurrent callers took ${writeSeconds.toFixed(2)} s (${pendingBefore} pending)`,
  });
  await store.close();
}

/** INSERTs one row at a time, each its own autocommit statement; returns seconds. */
async function rowByRow(ctx: Ctx, rows: readonly Row[]): Promise<number> {
  const sql = ctx.svc.sql;
  const table = `${ctx.raw.schema}.rowbyrow`;
  const started = performance.now();
  for (const r of rows) {
    await sql`insert into ${sql(table)} (user_id, id, role, content, meta, created_at)
      values (${r.user_id}, ${r.id}, ${r.role}, ${r.content}, ${r.meta as null}, ${r.created_at})`;
  }
  return (performance.now() - started) / 1000;
}
