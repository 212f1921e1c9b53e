import type { PostgresAdapter } from '../adapters/postgres.js';
import type { RedisAdapter } from '../adapters/redis.js';
import { fromEnv } from '../env.js';
import { ErrorCode, isStoreError } from '../errors.js';
import { userKey } from '../model/validate.js';
import { leaveLeftovers, TieredStore } from '../store.js';
import type { Health, ThreadInfo } from '../types.js';
import type { Flags } from './args.js';
import { CLOSE_MS, settleWithin } from './calls.js';
import { CliError, Exit } from './errors.js';
import { count, plural, type Output } from './output.js';

type Env = Record<string, string | undefined>;

/** `export <userId>`: exportUser's JSON on stdout (dates as ISO strings). */
export async function exportCommand(flags: Flags, env: Env, output: Output): Promise<number> {
  const user = flags.user as string;
  return withStore('export', flags, env, output, async (store) => {
    const exported = await store.exportUser(user);
    output.out(JSON.stringify(exported, null, 2));
    return Exit.OK;
  });
}

/** What `inspect --json` prints. */
export interface InspectReport {
  ok: boolean;
  userId: string;
  keyPrefix: string;
  schema: string;
  /** Threads as the store lists them (pending writes laid over), with whether Redis holds a copy of each (null: no Redis). */
  threads: (Omit<ThreadInfo, 'createdAt' | 'updatedAt'> & { updatedAt: string; hot: boolean | null })[];
  redis: { reachable: boolean; journal: number | null; hotThreads: string[]; userData: boolean } | null;
  postgres: { reachable: boolean; threads: number | null; messages: number | null; userRow: boolean } | null;
  /** Tiers holding data of the user. */
  heldBy: string[];
  errors: string[];
}

/** `inspect <userId>`: threads, counts, pending writes and which tiers hold the user. Changes nothing but a read. */
export async function inspect(flags: Flags, env: Env, output: Output): Promise<number> {
  const user = flags.user as string;
  return withStore('inspect', flags, env, output, async (store, redis, postgres) => {
    const report: InspectReport = {
      ok: true,
      userId: user,
      keyPrefix: flags.keyPrefix,
      schema: flags.schema,
      threads: [],
      redis: null,
      postgres: null,
      heldBy: [],
      errors: [],
    };
    const infos: ThreadInfo[] = [];
    let cursor: string | null = null;
    do {
      const page: { threads: ThreadInfo[]; cursor: string | null } = await store.listThreads(user, { limit: 1000, cursor });
      infos.push(...page.threads);
      cursor = page.cursor;
    } while (cursor !== null);
    const health: Health = store.health();
    if (redis) {
      report.redis = { reachable: health.redis === 'up', journal: null, hotThreads: [], userData: false };
      if (report.redis.reachable) {
        try {
          const held = await redis.holdings(userKey(user));
          Object.assign(report.redis, { journal: held.journal, hotThreads: held.threads, userData: held.userData });
        } catch (error) {
          report.redis.reachable = false;
          report.errors.push(`redis: ${output.describe(error)}`);
        }
      } else report.errors.push('redis is unreachable');
    }
    if (postgres) {
      report.postgres = { reachable: health.postgres === 'up', threads: null, messages: null, userRow: false };
      if (report.postgres.reachable) {
        try {
          Object.assign(report.postgres, await postgres.footprint(userKey(user)));
        } catch (error) {
          report.postgres.reachable = false;
          report.errors.push(`postgres: ${output.describe(error)}`);
        }
      } else report.errors.push('postgres is unreachable');
    }
    const hot = new Set(report.redis?.hotThreads ?? []);
    report.threads = infos.map((t) => ({
      id: t.id,
      title: t.title,
      messages: t.messages,
      updatedAt: t.updatedAt.toISOString(),
      hot: redis ? hot.has(t.id) : null,
    }));
    const r = report.redis;
    if (r && (r.journal || r.hotThreads.length > 0 || r.userData)) report.heldBy.push('redis');
    const p = report.postgres;
    if (p && (p.threads || p.userRow)) report.heldBy.push('postgres');
    if (!redis && !postgres) report.heldBy.push('memory');
    report.ok = report.errors.length === 0;
    if (flags.json) output.out(JSON.stringify(report, null, 2));
    else describe(report, output, postgres !== undefined && redis !== undefined);
    return report.ok ? Exit.OK : Exit.FAILED;
  });
}

function describe(report: InspectReport, output: Output, cache: boolean): void {
  output.out(`user ${JSON.stringify(report.userId)}: ${plural(report.threads.length, 'thread')}`);
  const width = Math.max(6, ...report.threads.map((t) => t.id.length));
  for (const t of report.threads) {
    const copy = t.hot === null ? '' : t.hot ? `  ${cache ? 'hot copy in Redis' : 'in Redis'}` : '';
    const title = t.title === null ? '' : `  ${JSON.stringify(t.title)}`;
    output.out(`  ${t.id.padEnd(width)}  ${plural(t.messages, 'message').padStart(14)}  last activity ${t.updatedAt}${copy}${title}`);
  }
  const r = report.redis;
  if (r?.journal !== null && r?.journal !== undefined) {
    output.out(r.journal === 0 ? "pending: nothing in Redis's journal" : `pending: ${plural(r.journal, 'write')} in Redis's journal (run sync to move them)`);
  }
  const held: string[] = [];
  if (r?.reachable) {
    const parts = [
      r.hotThreads.length > 0 ? `${cache ? 'hot copies of ' : ''}${plural(r.hotThreads.length, 'thread')}` : '',
      r.userData ? 'user data' : '',
      r.journal ? 'journal' : '',
    ]
      .filter(Boolean)
      .join(', ');
    held.push(`redis (${parts || 'nothing'})`);
  }
  const p = report.postgres;
  if (p?.reachable) {
    held.push(
      `postgres (${p.threads || p.userRow ? `${plural(p.threads ?? 0, 'thread')}, ${count(p.messages ?? 0)} messages${p.userRow ? ', user row' : ''}` : 'nothing'})`,
    );
  }
  if (held.length > 0) output.out(`tiers: ${held.join('; ')}`);
  output.out(`held by: ${report.heldBy.length === 0 ? 'no tier' : report.heldBy.join(', ')}`);
  for (const error of report.errors) output.err(`inspect: ${error}`);
}

/** A store on what the environment configures (at least one server), closed afterwards; a bad user id is a usage error. */
async function withStore(
  command: string,
  flags: Flags,
  env: Env,
  output: Output,
  work: (store: TieredStore, redis: RedisAdapter | undefined, postgres: PostgresAdapter | undefined) => Promise<number>,
): Promise<number> {
  const { keyPrefix, schema, timeoutMs } = flags;
  const adapterOptions = { timeoutMs, connectTimeoutMs: timeoutMs };
  const options = fromEnv(env, { logger: output.logger(), redis: { ...adapterOptions, keyPrefix }, postgres: { ...adapterOptions, schema } });
  const { redis, postgres } = options;
  if (!redis && !postgres) {
    throw new CliError(Exit.USAGE, `${command} reads the servers the environment configures, and none is: set REDIS_URL and/or DATABASE_URL`);
  }
  const store = new TieredStore(options);
  // Looking must not move another process's pending writes (a store does that soon after it starts).
  leaveLeftovers(store);
  try {
    return await work(store, redis, postgres);
  } catch (error) {
    if (isStoreError(error) && error.code === ErrorCode.INVALID_USER_ID) throw new CliError(Exit.USAGE, `${command}: ${output.describe(error)}`);
    throw new CliError(Exit.FAILED, `${command}: ${output.describe(error)}`);
  } finally {
    await settleWithin(CLOSE_MS + timeoutMs, store.close({ timeoutMs }));
  }
}
