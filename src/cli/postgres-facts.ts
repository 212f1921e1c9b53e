import type { Sql } from 'postgres';
import { PostgresAdapter } from '../adapters/postgres.js';

export interface Shipped {
  version: number;
  name: string;
}

export interface MigrationState {
  /** Versions recorded in `<schema>.schema_migrations`. */
  applied: number[];
  /** Versions this package ships. */
  shipped: number[];
  /** Shipped but not applied: the store applies them on first connect. */
  missing: number[];
  /** Applied but not shipped: a newer version of the package migrated this schema. */
  unknown: number[];
  state: 'not migrated yet' | 'up to date' | 'behind' | 'ahead';
}

/** The migrations this package ships, from their file names (`001_init.sql`). */
export function shippedMigrations(): Shipped[] {
  return PostgresAdapter.migrations().map(({ file }) => {
    const [, version = '0', name = file] = /^(\d+)_(.*)\.sql$/.exec(file) ?? [];
    return { version: Number(version), name };
  });
}

export function migrationState(applied: number[], shipped: readonly Shipped[]): MigrationState {
  const versions = shipped.map((m) => m.version);
  const missing = versions.filter((v) => !applied.includes(v));
  const unknown = applied.filter((v) => !versions.includes(v));
  const state = applied.length === 0 ? 'not migrated yet' : unknown.length > 0 ? 'ahead' : missing.length > 0 ? 'behind' : 'up to date';
  return { applied, shipped: versions, missing, unknown, state };
}

export async function serverVersion(sql: Sql): Promise<string> {
  const [row] = await sql`show server_version`;
  return String(row?.server_version ?? '');
}

/** The store's tables present in `schema` (none when the schema does not exist). */
export async function tablesOf(sql: Sql, schema: string): Promise<Set<string>> {
  const rows = await sql`select tablename from pg_catalog.pg_tables where schemaname = ${schema}`;
  return new Set(rows.map((row) => row.tablename as string));
}

export async function appliedVersions(sql: Sql, schema: string, tables: Set<string>): Promise<number[]> {
  if (!tables.has('schema_migrations')) return [];
  const rows = await sql`select version from ${sql(`${schema}.schema_migrations`)} order by version`;
  return rows.map((row) => Number(row.version));
}

/**
 * Users with anything stored (messages, phone, booking or a subscription; not the tombstones
 * erased users leave) and subscribers. Users with messages are found with a loose index scan of
 * the messages' primary key: one probe per user, not a read of every message.
 */
export async function userCounts(sql: Sql, schema: string): Promise<{ users: number; subscribers: number }> {
  const messages = sql(`${schema}.messages`);
  const users = sql(`${schema}.users`);
  const [row] = await sql`
    with recursive talked as (
      (select user_id from ${messages} order by user_id limit 1)
      union all
      select (select m.user_id from ${messages} m where m.user_id > t.user_id order by m.user_id limit 1)
      from talked t where t.user_id is not null
    )
    select
      (select count(*) from (
        select user_id from talked where user_id is not null
        union
        select user_id from ${users} where phone is not null or booking is not null or subscribed
      ) known)::int as users,
      (select count(*) from ${users} where subscribed)::int as subscribers`;
  return { users: Number(row?.users ?? 0), subscribers: Number(row?.subscribers ?? 0) };
}

/** Rows in `<schema>.dead_letters`, or 0 when that table does not exist (no dead letter ever recorded). */
export async function deadLetterCount(sql: Sql, schema: string, tables: Set<string>): Promise<number> {
  if (!tables.has('dead_letters')) return 0;
  const [row] = await sql`select count(*)::int as n from ${sql(`${schema}.dead_letters`)}`;
  return Number(row?.n ?? 0);
}
