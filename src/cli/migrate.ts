import { PostgresAdapter } from '../adapters/postgres.js';
import { withDeadline } from '../routing/deadline.js';
import { postgresFromEnv } from '../env.js';
import { maskUrl } from '../logger.js';
import { BIN, type Flags } from './args.js';
import { CLOSE_MS, settleWithin } from './calls.js';
import { CliError, Exit } from './errors.js';
import { list, type Output } from './output.js';
import { appliedVersions, shippedMigrations, tablesOf } from './postgres-facts.js';

type Env = Record<string, string | undefined>;

export async function migrate(flags: Flags, env: Env, output: Output): Promise<number> {
  if (flags.print) {
    printMigrations(flags.schema, output);
    return Exit.OK;
  }
  const target = postgresFromEnv(env);
  if (!target) throw new CliError(Exit.USAGE, 'migrate: no PostgreSQL is configured (set DATABASE_URL, DATABASE_PUBLIC_URL or PGHOST); --print needs none');
  const { schema, timeoutMs } = flags;
  const adapter = new PostgresAdapter({ url: target.url, schema, timeoutMs, connectTimeoutMs: timeoutMs, max: 1 });
  output.out(`migrating schema "${schema}" of ${maskUrl(target.url)} (from ${target.source})`);
  try {
    const before = await applied(adapter, schema, timeoutMs);
    await adapter.connect();
    const after = await applied(adapter, schema, timeoutMs);
    report(
      after.filter((v) => !before.includes(v)),
      after,
      output,
    );
    return Exit.OK;
  } catch (error) {
    output.err(`migrate failed: ${output.describe(error)}`);
    return Exit.FAILED;
  } finally {
    await settleWithin(CLOSE_MS, adapter.close());
  }
}

/** Every migration's SQL, ready for psql on a fresh schema: one transaction, search_path set first. */
function printMigrations(schema: string, output: Output): void {
  // Written as they are: SQL has no secrets, and masking could mangle it.
  const write = (text: string) => output.stdout.write(`${text}\n`);
  write(`-- ${BIN} migrations for schema ${schema}, for a fresh schema:`);
  write(`--   ${BIN} migrate --print --schema ${schema} | psql "$DATABASE_URL"`);
  write('begin;');
  write(`create schema if not exists ${schema};`);
  write(`set local search_path to ${schema};`);
  for (const { file, sql } of PostgresAdapter.migrations()) {
    write('');
    write(`-- ${file}`);
    write(sql.trimEnd());
  }
  write('');
  write('commit;');
}

async function applied(adapter: PostgresAdapter, schema: string, timeoutMs: number): Promise<number[]> {
  const read = async () => appliedVersions(adapter.sql, schema, await tablesOf(adapter.sql, schema));
  return withDeadline('postgres', timeoutMs, read());
}

function report(added: number[], after: number[], output: Output): void {
  const names = new Map(shippedMigrations().map((m) => [m.version, m.name]));
  const named = (v: number) => `${v} (${names.get(v) ?? 'unknown to this package'})`;
  if (added.length > 0) output.out(`applied ${added.map(named).join(', ')}`);
  else output.out(`already up to date: nothing to apply`);
  output.out(`applied versions now: ${list(after)}`);
  const unknown = after.filter((v) => !names.has(v));
  if (unknown.length > 0)
    output.out(`note: ${list(unknown)} ${unknown.length === 1 ? 'is' : 'are'} not shipped by this package: a newer version of it migrated this schema`);
}
