import type { PostgresAdapter } from '../adapters/postgres.js';
import type { RedisAdapter } from '../adapters/redis.js';
import { emptyReport, encryptExisting, type EncryptExistingReport } from '../crypto/encrypt-existing.js';
import { KeyRing } from '../crypto/keys.js';
import { fromEnv } from '../env.js';
import { Secrets } from '../logger.js';
import { withDeadline } from '../routing/deadline.js';
import type { Flags } from './args.js';
import { CLOSE_MS, settleWithin } from './calls.js';
import { CliError, Exit } from './errors.js';
import { count, plural, type Output } from './output.js';

type Env = Record<string, string | undefined>;

const TTL_MS = { history: 3_600_000, userData: 3_600_000, subscribers: 86_400_000 };

/** What `encrypt-existing --json` prints. */
export interface EncryptExistingCommandReport extends EncryptExistingReport {
  ok: boolean;
  schema: string;
  /** Users whose hot copies in Redis were dropped (they held plaintext). */
  invalidated: number;
  errors: string[];
}

/**
 * `encrypt-existing [--batch N]`: seals the plaintext PostgreSQL holds from before encryption was
 * on (see encryptExisting), with the keys of STORE_ENCRYPTION_KEYS; after each batch drops the hot
 * copies Redis holds of the users it touched (they are plaintext). Resumes where an interrupted
 * run stopped; safe to run while bots write.
 */
export async function encryptExistingCommand(flags: Flags, env: Env, output: Output): Promise<number> {
  const { keyPrefix, schema, timeoutMs } = flags;
  const adapterOptions = { timeoutMs, connectTimeoutMs: timeoutMs };
  const { redis, postgres, encryption } = fromEnv(env, {
    logger: output.logger(),
    redis: { ...adapterOptions, keyPrefix },
    postgres: { ...adapterOptions, schema },
  });
  if (!postgres || !encryption) {
    await closeAll([redis, postgres]);
    throw new CliError(
      Exit.USAGE,
      !postgres
        ? 'encrypt-existing rewrites PostgreSQL: DATABASE_URL (or DATABASE_PUBLIC_URL, PGHOST) is not set'
        : 'encrypt-existing needs the keys: STORE_ENCRYPTION_KEYS is not set',
    );
  }
  const ring = new KeyRing(encryption);
  const report: EncryptExistingCommandReport = { ok: false, schema, ...emptyReport(), invalidated: 0, errors: [] };
  try {
    Object.assign(report, await run(flags, ring, redis, postgres, report, output));
  } catch (error) {
    report.errors.push(`${output.describe(error)}; the batches done are kept: run it again to resume`);
  } finally {
    await closeAll([redis, postgres]);
  }
  report.ok = report.errors.length === 0 && report.done;
  if (flags.json) output.out(JSON.stringify(report, null, 2));
  else {
    for (const [table, t] of Object.entries(report.tables)) {
      output.out(
        `${table}: read ${plural(t.read, 'row')}, sealed ${count(t.sealed)}${t.changedMeanwhile ? `, ${count(t.changedMeanwhile)} changed meanwhile (kept)` : ''}`,
      );
    }
    if (redis) output.out(`dropped the hot copies of ${plural(report.invalidated, 'user')} in Redis`);
    if (report.done) output.out('done: nothing left in plaintext in PostgreSQL');
    for (const error of report.errors) output.err(`encrypt-existing: ${error}`);
  }
  return report.ok ? Exit.OK : Exit.FAILED;
}

async function run(
  flags: Flags,
  ring: KeyRing,
  redis: RedisAdapter | undefined,
  postgres: PostgresAdapter,
  report: EncryptExistingCommandReport,
  output: Output,
): Promise<EncryptExistingReport> {
  const { timeoutMs } = flags;
  postgres.bind({ role: 'durable', historyLimit: 50, ttlMs: TTL_MS, logger: output.logger(), secrets: new Secrets() });
  await withDeadline('postgres', timeoutMs * 2, postgres.connect()).catch((error: unknown) => {
    throw new Error(`postgres is unreachable: ${output.describe(error)}`);
  });
  if (redis) {
    redis.bind({ role: 'cache', historyLimit: 50, ttlMs: TTL_MS, logger: output.logger(), secrets: new Secrets() });
    await withDeadline('redis', timeoutMs * 2, redis.connect()).catch((error: unknown) => {
      throw new Error(`redis is unreachable (its plaintext hot copies must be dropped): ${output.describe(error)}`);
    });
  }
  if (!flags.json) output.out(`encrypt-existing: schema "${report.schema}", batches of ${count(flags.batch)} rows, master key '${ring.current}'`);
  const invalidated = new Set<string>();
  return encryptExisting({
    postgres,
    ring,
    batch: flags.batch,
    afterBatch: async (users) => {
      if (!redis) return;
      await withDeadline('redis', timeoutMs, redis.invalidate(users, false));
      for (const user of users) invalidated.add(user);
      report.invalidated = invalidated.size;
    },
  });
}

async function closeAll(adapters: (RedisAdapter | PostgresAdapter | undefined)[]): Promise<void> {
  await settleWithin(CLOSE_MS, Promise.allSettled(adapters.map((adapter) => adapter?.close())));
}
