import { PostgresAdapter } from '../adapters/postgres.js';
import type { EnvTarget } from '../env.js';
import { maskUrl } from '../logger.js';
import { Calls, CLOSE_MS, settleWithin, tierFacts, type TierFacts } from './calls.js';
import type { Output } from './output.js';
import {
  appliedVersions,
  deadLetterCount,
  migrationState,
  serverVersion,
  shippedMigrations,
  tablesOf,
  userCounts,
  type MigrationState,
} from './postgres-facts.js';

export interface PostgresFacts extends TierFacts {
  /** `show server_version`. */
  version: string | null;
  schema: string;
  migrations: MigrationState | null;
  /** Users with anything stored; null before the tables exist. */
  users: number | null;
  subscribers: number | null;
  /** Rows in `<schema>.dead_letters` (0 when the table does not exist). */
  deadLetters: number | null;
}

export interface CheckOptions {
  schema: string;
  timeoutMs: number;
  output: Output;
}

const QUERY_CANCELED = '57014';

export async function checkPostgres(target: EnvTarget, options: CheckOptions): Promise<PostgresFacts> {
  const { schema, timeoutMs } = options;
  const facts: PostgresFacts = {
    ...tierFacts(maskUrl(target.url), target.source),
    version: null,
    schema,
    migrations: null,
    users: null,
    subscribers: null,
    deadLetters: null,
  };
  let adapter: PostgresAdapter;
  try {
    adapter = new PostgresAdapter({
      url: target.url,
      schema,
      timeoutMs,
      connectTimeoutMs: timeoutMs,
      max: 1,
      // A slow count is cancelled by the server and reported; it does not make the server look down.
      postgresOptions: { connection: { application_name: 'tiered-conversation-store doctor', statement_timeout: timeoutMs } },
    });
  } catch (error) {
    facts.error = options.output.describe(error);
    return facts;
  }
  const unavailable = (e: unknown) => adapter.isUnavailable(e) && (e as { code?: unknown }).code !== QUERY_CANCELED;
  const calls = new Calls('postgres', timeoutMs, facts, (e) => options.output.describe(e), unavailable);
  try {
    facts.version = (await calls.reach(() => serverVersion(adapter.sql))) ?? null;
    facts.latencyMs = await calls.latency(() => adapter.ping());
    await describeSchema(facts, adapter, calls);
  } finally {
    await settleWithin(CLOSE_MS, adapter.close());
  }
  return facts;
}

async function describeSchema(facts: PostgresFacts, adapter: PostgresAdapter, calls: Calls): Promise<void> {
  const { schema } = facts;
  const tables = await calls.run('tables', () => tablesOf(adapter.sql, schema));
  if (!tables) return;
  const applied = await calls.run('schema_migrations', () => appliedVersions(adapter.sql, schema, tables));
  if (applied) facts.migrations = migrationState(applied, shippedMigrations());
  if (tables.has('users') && tables.has('messages')) {
    const counts = await calls.run('users', () => userCounts(adapter.sql, schema));
    facts.users = counts?.users ?? null;
    facts.subscribers = counts?.subscribers ?? null;
  }
  facts.deadLetters = (await calls.run('dead_letters', () => deadLetterCount(adapter.sql, schema, tables))) ?? null;
}
