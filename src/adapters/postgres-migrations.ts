/**
 * Versioned schema changes, applied in order once per schema under an advisory lock. Each runs
 * with `search_path` set to the store's schema, so the text names no schema and ships as-is in
 * `dist/sql/` for DBAs who apply migrations themselves (`SET search_path TO <schema>;` first).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const LEDGER = `create table if not exists schema_migrations (
  version integer primary key,
  name text not null,
  applied_at timestamptz not null default now()
);`;

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'init',
    sql: `-- One row per message; ids are client-made and time-ordered, so the primary key serves
-- "newest N of a user" and makes replays idempotent.
create table messages (
  user_id text collate "C" not null,
  id text collate "C" not null,
  role text not null check (role in ('system', 'user', 'assistant', 'tool')),
  content text not null,
  meta jsonb,
  created_at timestamptz not null,
  primary key (user_id, id)
);

-- One row per user: each field with the id of the write that set it (last writer wins), and the
-- floor at or below which messages were cleared or erased (a replay never brings them back).
create table users (
  user_id text collate "C" primary key,
  phone text,
  phone_v text collate "C",
  booking jsonb,
  booking_v text collate "C",
  subscribed boolean not null default false,
  subscribed_v text collate "C",
  history_floor text collate "C" not null default '',
  updated_at timestamptz not null default now()
);

create index users_subscribed on users (user_id) where subscribed;`,
  },
  {
    version: 2,
    name: 'idempotency_keys',
    sql: `-- A re-delivered update (Telegram retries after a crash) carries the same key: stored once.
alter table messages add column idempotency_key text;
create unique index messages_idempotency_key on messages (user_id, idempotency_key) where idempotency_key is not null;`,
  },
  {
    version: 3,
    name: 'dead_letters',
    sql: `-- Writes PostgreSQL refused for good, set aside so the rest of a journal moves on; kept for
-- people to look at (the doctor command counts them), never replayed by the store.
create table dead_letters (
  seq bigserial primary key,
  user_id text not null,
  op_id text not null,
  kind text not null,
  entry text not null,
  error text not null,
  at timestamptz not null default now()
);`,
  },
  {
    version: 4,
    name: 'retention_by_age',
    sql: `-- Finds messages past retention.maxAgeDays in batches without scanning the table.
create index messages_created_at on messages (created_at);`,
  },
];

/** The text run for a migration: the ledger, the change, and its row in the ledger. */
export function migrationText(migration: Migration): string {
  return `${LEDGER}\n\n${migration.sql}\n\ninsert into schema_migrations (version, name) values (${migration.version}, '${migration.name}');\n`;
}

export function migrations(): readonly Migration[] {
  return MIGRATIONS;
}
