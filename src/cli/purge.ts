import type { PostgresAdapter, PurgedThread } from '../adapters/postgres.js';
import type { RedisAdapter } from '../adapters/redis.js';
import { fromEnv } from '../env.js';
import { Secrets } from '../logger.js';
import { withDeadline } from '../routing/deadline.js';
import type { Flags } from './args.js';
import { CLOSE_MS, settleWithin } from './calls.js';
import { CliError, Exit } from './errors.js';
import { count, plural, type Output } from './output.js';

type Env = Record<string, string | undefined>;

const DAY_MS = 86_400_000;
/** What the store's defaults give a copy's meta hash (invalidate renews its time to live). */
const TTL_MS = { history: 3_600_000, userData: 3_600_000, subscribers: 86_400_000 };

/** What `purge --json` prints. */
export interface PurgeReport {
  ok: boolean;
  dryRun: boolean;
  keyPrefix: string;
  schema: string;
  keepLast: number | null;
  maxAgeDays: number | null;
  /** One entry per batch: what it removed (or would remove) per user and thread. */
  batches: { rule: 'keep-last' | 'max-age'; removed: PurgedThread[] }[];
  messages: number;
  /** Users whose hot copies in Redis were dropped. */
  invalidated: number;
  errors: string[];
}

/**
 * `purge --keep-last N | --max-age-days N [--dry-run] [--batch N]`: deletes old messages from
 * PostgreSQL in batches (see PostgresAdapter.purge), and after each batch drops the hot copies
 * Redis holds of the users it touched, so every read agrees with PostgreSQL at once.
 */
export async function purge(flags: Flags, env: Env, output: Output): Promise<number> {
  const { keyPrefix, schema, timeoutMs } = flags;
  const adapterOptions = { timeoutMs, connectTimeoutMs: timeoutMs };
  const { redis, postgres } = fromEnv(env, { logger: output.logger(), redis: { ...adapterOptions, keyPrefix }, postgres: { ...adapterOptions, schema } });
  if (!postgres) {
    await closeAll([redis]);
    throw new CliError(Exit.USAGE, 'purge deletes from PostgreSQL: DATABASE_URL (or DATABASE_PUBLIC_URL, PGHOST) is not set');
  }
  const report: PurgeReport = {
    ok: false,
    dryRun: flags.dryRun,
    keyPrefix,
    schema,
    keepLast: flags.keepLast ?? null,
    maxAgeDays: flags.maxAgeDays ?? null,
    batches: [],
    messages: 0,
    invalidated: 0,
    errors: [],
  };
  try {
    await run(flags, redis, postgres, report, output);
  } catch (error) {
    report.errors.push(`${output.describe(error)}; the batches above are done, the rest was not touched`);
  } finally {
    await closeAll([redis, postgres]);
  }
  report.ok = report.errors.length === 0;
  if (flags.json) output.out(JSON.stringify(report, null, 2));
  else {
    const did = flags.dryRun ? 'would remove' : 'removed';
    const threads = report.batches.reduce((n, b) => n + b.removed.length, 0);
    output.out(
      `${flags.dryRun ? 'dry run: ' : ''}${did} ${plural(report.messages, 'message')} in ${plural(report.batches.length, 'batch', 'batches')} (${plural(threads, 'thread cut', 'thread cuts')})`,
    );
    if (!flags.dryRun && redis) output.out(`dropped the hot copies of ${plural(report.invalidated, 'user')} in Redis`);
    for (const error of report.errors) output.err(`purge: ${error}`);
  }
  return report.ok ? Exit.OK : Exit.FAILED;
}

async function run(flags: Flags, redis: RedisAdapter | undefined, postgres: PostgresAdapter, report: PurgeReport, output: Output): Promise<void> {
  const { timeoutMs, dryRun } = flags;
  postgres.bind({ role: 'durable', historyLimit: 50, ttlMs: TTL_MS, logger: output.logger(), secrets: new Secrets() });
  await withDeadline('postgres', timeoutMs * 2, postgres.connect()).catch((error: unknown) => {
    throw new Error(`postgres is unreachable: ${output.describe(error)}`);
  });
  // Redis first: deleting rows whose hot copies could not be dropped would leave reads disagreeing.
  if (redis && !dryRun) {
    redis.bind({ role: 'cache', historyLimit: 50, ttlMs: TTL_MS, logger: output.logger(), secrets: new Secrets() });
    await withDeadline('redis', timeoutMs * 2, redis.connect()).catch((error: unknown) => {
      throw new Error(`redis is unreachable (its hot copies must be dropped with what is deleted): ${output.describe(error)}`);
    });
  }
  const rules: { rule: 'keep-last' | 'max-age'; keepLast?: number; before?: Date }[] = [];
  if (flags.keepLast !== undefined) rules.push({ rule: 'keep-last', keepLast: flags.keepLast });
  if (flags.maxAgeDays !== undefined) rules.push({ rule: 'max-age', before: new Date(Date.now() - flags.maxAgeDays * DAY_MS) });
  if (!flags.json) {
    const what = rules.map((r) =>
      r.rule === 'keep-last' ? `all but the newest ${count(r.keepLast ?? 0)} messages of every thread` : `messages older than ${r.before?.toISOString()}`,
    );
    output.out(`purge${dryRun ? ' (dry run: nothing changes)' : ''}: ${what.join(', then ')}; schema "${report.schema}", batches of ${count(flags.batch)}`);
  }
  const invalidated = new Set<string>();
  for (const { rule, ...params } of rules) {
    for await (const removed of postgres.purge({ ...params, batch: flags.batch, dryRun })) {
      const messages = removed.reduce((n, r) => n + r.messages, 0);
      report.batches.push({ rule, removed });
      report.messages += messages;
      if (!flags.json) {
        output.out(`batch ${report.batches.length} (${rule}): ${dryRun ? 'would remove' : 'removed'} ${plural(messages, 'message')}`);
        for (const r of removed) output.out(`  user ${r.user} thread ${r.thread}: ${plural(r.messages, 'message')}`);
      }
      if (dryRun || !redis || removed.length === 0) continue;
      const users = new Set(removed.map((r) => r.user));
      await withDeadline('redis', timeoutMs, redis.invalidate(users, false)).catch((error: unknown) => {
        throw new Error(
          `could not drop the hot copies of ${[...users].join(', ')} in Redis (they serve the old messages until they expire): ${output.describe(error)}`,
        );
      });
      for (const user of users) invalidated.add(user);
      report.invalidated = invalidated.size;
    }
  }
}

async function closeAll(adapters: (RedisAdapter | PostgresAdapter | undefined)[]): Promise<void> {
  await settleWithin(CLOSE_MS, Promise.allSettled(adapters.map((adapter) => adapter?.close())));
}
