import type { PostgresAdapter } from '../adapters/postgres.js';
import type { RedisAdapter } from '../adapters/redis.js';
import { withDeadline } from '../routing/deadline.js';
import { fromEnv, postgresFromEnv, redisFromEnv } from '../env.js';
import { TieredStore } from '../store.js';
import type { SyncResult } from '../types.js';
import type { Flags } from './args.js';
import { CLOSE_MS, settleWithin } from './calls.js';
import { CliError, Exit } from './errors.js';
import { count, duration, plural, type Output } from './output.js';
import { Progress } from './progress.js';

type Env = Record<string, string | undefined>;

/** What `sync --json` prints. */
export interface SyncReport {
  ok: boolean;
  keyPrefix: string;
  schema: string;
  /** Writes in Redis's journal before the pass. */
  pendingBefore: number | null;
  result: SyncResult | null;
  /** Writes PostgreSQL refused for good during the pass. */
  deadLetters: number;
  /** Why the pass did not run or did not finish (masked). */
  errors: string[];
}

const POLL_MS = 200;

export async function sync(flags: Flags, env: Env, output: Output): Promise<number> {
  const { keyPrefix, schema, timeoutMs } = flags;
  const adapterOptions = { timeoutMs, connectTimeoutMs: timeoutMs };
  const options = fromEnv(env, { logger: output.logger(), redis: { ...adapterOptions, keyPrefix }, postgres: { ...adapterOptions, schema } });
  const { redis, postgres } = options;
  if (!redis || !postgres) {
    await closeAll([redis, postgres]);
    throw new CliError(
      Exit.USAGE,
      `sync moves writes pending in Redis to PostgreSQL, so it needs both: ${redis ? 'DATABASE_URL (or DATABASE_PUBLIC_URL, PGHOST)' : 'REDIS_URL (or REDIS_PUBLIC_URL, REDISHOST)'} is not set`,
    );
  }
  const report: SyncReport = { ok: false, keyPrefix, schema, pendingBefore: null, result: null, deadLetters: 0, errors: [] };
  if (!flags.json) output.out(`sync: ${describeTiers(env, redis, postgres)}, key prefix "${keyPrefix}", schema "${schema}"`);
  report.errors = await reach(redis, postgres, timeoutMs, output);
  if (report.errors.length > 0) {
    await closeAll([redis, postgres]);
    return finish(report, flags, output);
  }
  await pass(new TieredStore(options), redis, report, flags, output);
  return finish(report, flags, output);
}

/** Connects both (PostgreSQL's migrations included) before the store starts, to say why a tier is unreachable. */
async function reach(redis: RedisAdapter, postgres: PostgresAdapter, timeoutMs: number, output: Output): Promise<string[]> {
  const tiers = [
    { name: 'redis', connect: () => redis.connect() },
    { name: 'postgres', connect: () => postgres.connect() },
  ];
  const outcomes = await Promise.allSettled(tiers.map((tier) => withDeadline(tier.name, timeoutMs * 2, tier.connect())));
  return outcomes.flatMap((outcome, i) => (outcome.status === 'rejected' ? [`${tiers[i]?.name} is unreachable: ${output.describe(outcome.reason)}`] : []));
}

async function pass(store: TieredStore, redis: RedisAdapter, report: SyncReport, flags: Flags, output: Output): Promise<void> {
  store.on('tierDown', ({ tier, error }) => report.errors.push(`${tier} went down: ${output.describe(error)}`));
  store.on('deadLetter', () => report.deadLetters++);
  let poll: NodeJS.Timeout | undefined;
  try {
    const before = await withDeadline('redis', flags.timeoutMs, redis.pendingCount());
    report.pendingBefore = before;
    if (!flags.json) output.out(`${plural(before, 'write')} pending in Redis's journal`);
    // With --json, stdout is for the JSON alone.
    const progress = new Progress(flags.json ? output.stderr : output.stdout, before);
    poll = setInterval(
      () =>
        void redis.pendingCount().then(
          (n) => progress.update(n),
          () => {},
        ),
      POLL_MS,
    );
    const result = await store.syncNow();
    clearInterval(poll);
    progress.finish(result.messages + result.userData + result.subscribers, result.pending);
    report.result = result;
    report.ok = report.errors.length === 0;
  } catch (error) {
    report.errors.push(`sync failed: ${output.describe(error)} (what did not move stays pending for the next pass)`);
  } finally {
    clearInterval(poll);
    await settleWithin(flags.timeoutMs * 2, store.close({ timeoutMs: flags.timeoutMs }));
  }
}

function finish(report: SyncReport, flags: Flags, output: Output): number {
  if (flags.json) output.out(JSON.stringify(report, null, 2));
  else describe(report, output);
  return report.ok ? Exit.OK : Exit.FAILED;
}

function describeTiers(env: Env, redis: RedisAdapter, postgres: PostgresAdapter): string {
  const source = (target: { source: string } | undefined) => (target ? ` (from ${target.source})` : '');
  return `redis ${redis.describe()}${source(redisFromEnv(env))} -> postgres ${postgres.describe()}${source(postgresFromEnv(env))}`;
}

function describe(report: SyncReport, output: Output): void {
  const result = report.result;
  if (result) {
    output.out(moved(result));
    output.out(result.pending === 0 ? 'nothing left pending' : `${count(result.pending)} still pending: run sync again`);
  }
  if (report.deadLetters > 0) output.err(`${plural(report.deadLetters, 'write')} refused by PostgreSQL for good (dead letters; see the lines above)`);
  for (const error of report.errors) output.err(`sync: ${error}`);
}

function moved(result: SyncResult): string {
  if (result.messages + result.userData + result.subscribers === 0) return `nothing to move (${duration(result.durationMs)})`;
  const parts = [plural(result.messages, 'message'), plural(result.userData, 'user data change'), plural(result.subscribers, 'subscription change')];
  return `moved ${parts[0]}, ${parts[1]} and ${parts[2]} to PostgreSQL in ${duration(result.durationMs)}`;
}

async function closeAll(adapters: (RedisAdapter | PostgresAdapter | undefined)[]): Promise<void> {
  await settleWithin(CLOSE_MS, Promise.allSettled(adapters.map((adapter) => adapter?.close())));
}
