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
  {
    version: 5,
    name: 'threads',
    sql: `-- Version 2: threads, messages by id, edits, cuts, titles and drafts. A 0.1 row becomes a
-- message of thread 'main' by the column's default.
alter table messages
  add column thread text collate "C" not null default 'main',
  add column status text check (status in ('streaming', 'aborted')),
  add column edit_v text collate "C",
  add column updated_at timestamptz;

-- "Newest N of a thread", and finding a thread's first and last message.
create index messages_thread on messages (user_id, thread, id);
-- Drafts a process left streaming, for the sweeper that aborts them.
create index messages_streaming on messages (created_at) where status = 'streaming';

-- One row per thread that ever had a message, a title, a clear or a drop. floor: the thread's
-- messages at or below it were cleared (a replay never brings them back); title last writer wins
-- by title_v, title_at the time its id encodes. messages, created_at, updated_at and last_id: the adapter's inserts count their
-- rows in the same statement (a trigger would cost the one-message hot path a function call and
-- a transition table); every delete is uncounted by the trigger below, whatever its origin.
create table threads (
  user_id text collate "C" not null,
  thread text collate "C" not null,
  title text,
  title_v text collate "C",
  title_at timestamptz,
  floor text collate "C" not null default '',
  messages integer not null default 0,
  created_at timestamptz,
  updated_at timestamptz,
  last_id text collate "C" not null default '',
  primary key (user_id, thread)
);

-- listThreads: a user's threads, most recently active first.
create index threads_recent on threads (user_id, updated_at desc, thread);

-- A page of listThreads after a cursor (updated_at, thread). In a function so that its cached
-- generic plan walks threads_recent from the cursor for the next few rows: a prepared statement's
-- generic plan assumes a user holds a handful of threads and prefers a bitmap scan and a sort of
-- every thread past the cursor (O(threads) per page instead of O(page)).
create function threads_after(p_user text, p_at timestamptz, p_thread text, p_limit integer)
returns table (thread text, title text, messages integer, created_at timestamptz, updated_at timestamptz, at text, last_id text)
language plpgsql stable
set search_path from current
set enable_bitmapscan = off
as $fn$
begin
  return query
    select t.thread, t.title, t.messages, t.created_at, t.updated_at, t.updated_at::text, t.last_id from threads t
    where t.user_id = p_user and (t.messages > 0 or t.title is not null)
      and t.updated_at <= p_at and (t.updated_at < p_at or t.thread > p_thread)
    order by t.updated_at desc, t.thread
    limit p_limit;
end
$fn$;

-- Id ranges removed from a thread above its floor (deleteMessage, truncateAfter): an append
-- inside one is never stored again.
create table cuts (
  user_id text collate "C" not null,
  thread text collate "C" not null,
  from_id text collate "C" not null,
  to_id text collate "C" not null,
  primary key (user_id, thread, from_id, to_id)
);

-- Every delete (clear, cut, drop, erasure, retention, a DBA's) uncounts its rows, once per
-- statement; the thread's first and last message are looked up again in messages_thread.
create function threads_count_deleted() returns trigger language plpgsql
set search_path from current as $fn$
begin
  update threads t set
    messages = greatest(t.messages - d.n, 0),
    last_id = coalesce((select m.id from messages m where m.user_id = t.user_id and m.thread = t.thread order by m.id desc limit 1), ''),
    created_at = coalesce(
      (select m.created_at from messages m where m.user_id = t.user_id and m.thread = t.thread order by m.id limit 1), t.title_at, t.created_at),
    -- Emptied, a titled thread is as old and as recent as its title.
    updated_at = case when t.messages <= d.n and t.title is not null then t.title_at else t.updated_at end
  from (select user_id, thread, count(*) as n from deleted group by user_id, thread) d
  where t.user_id = d.user_id and t.thread = d.thread;
  return null;
end
$fn$;

create trigger messages_count_deleted after delete on messages
  referencing old table as deleted for each statement execute function threads_count_deleted();

-- A database written by 0.1: its messages are thread 'main' of their user.
insert into threads (user_id, thread, messages, created_at, updated_at, last_id)
select user_id, 'main', count(*), min(created_at), max(created_at), max(id)
from messages group by user_id;`,
  },
  {
    version: 6,
    name: 'tokens',
    sql: `-- Issue 14: each message's token count, stored at write time by the store's countTokens. Rows
-- already there get the default formula's count, ceil(UTF-8 bytes / 4) + 4, so budget reads need
-- no manual step. A row written later without one (by a DBA, or 0.1 code still running during the
-- upgrade) reads with the same formula.
alter table messages add column tokens integer;
update messages set tokens = ceil(octet_length(content) / 4.0)::integer + 4 where tokens is null;`,
  },
  {
    version: 7,
    name: 'summaries',
    sql: `-- Issue 14: one row per thread with a rolling summary (or a summary run's lease). text: the
-- summary (null: none, a row held only by a lease); summary_v: the id of the op that wrote it (last
-- writer wins); covers: the id of the newest message it covers; dirty: the id of an edit or cut of a
-- covered message made after it ('' none), which calls for a rerun. A clear or drop of the thread,
-- or an erasure of the user, at or above summary_v erases it (the floors in users and threads keep
-- an older summary op from coming back). lease and lease_until: the process summarising the thread.
create table summaries (
  user_id text collate "C" not null,
  thread text collate "C" not null,
  text text,
  summary_v text collate "C" not null default '',
  covers text collate "C" not null default '',
  dirty text collate "C" not null default '',
  lease text,
  lease_until timestamptz,
  primary key (user_id, thread)
);`,
  },
  {
    version: 8,
    name: 'data_keys',
    sql: `-- Issue 16 (encryption at rest): each user's data keys, wrapped by a master key the store holds
-- (never stored here). key_id is time-ordered like op ids; master_id names the master key that wraps
-- it. deleteUser destroys the user's keys (crypto-shredding): wrapped and master_id are emptied and
-- destroyed_by keeps the id of the delete, so copies of the user's rows left in backups no longer open.
create table data_keys (
  user_id text collate "C" not null,
  key_id text collate "C" not null,
  master_id text not null,
  wrapped text not null,
  destroyed_by text collate "C",
  primary key (user_id, key_id)
);
create index data_keys_master on data_keys (master_id) where destroyed_by is null;

-- Where an interrupted encrypt-existing run resumes: per table, the key of the last row it went
-- through (as JSON). Removed once a run reaches the end of every table.
create table encrypt_progress (
  step text primary key,
  cursor text not null
);`,
  },
  {
    version: 9,
    name: 'user_locks',
    sql: `-- A statement reads as of its start (READ COMMITTED): an append begun before a concurrent clear
-- committed passed the old floor, and the clear's delete, begun before the append committed, did
-- not see the new row, which stayed below the floor (the same with a cut, a drop, an erasure or
-- retention). So writes take a lock per user first: removals exclusive, before the statements that
-- raise floors or record cuts and delete below them; appends shared, reading their floors and cuts
-- in these functions, whose queries (volatile) read as of their own start, after the lock.

-- A lock covers the users whose hash falls in one of 1024 buckets: a batch of any size holds at most
-- 1024 entries of the server's shared lock table (6,400 by default), and two users of one bucket
-- only ever wait on each other while one of them is being removed.
-- Locks the buckets in one order, so two batches never wait on each other in a cycle.
create function lock_users(p_users text[], p_exclusive boolean[]) returns void language plpgsql volatile
set search_path from current as $fn$
begin
  perform case when s.exclusive then pg_advisory_xact_lock(s.space, s.key) else pg_advisory_xact_lock_shared(s.space, s.key) end
  from (
    select hashtext(current_schema()) as space, hashtext(x.user_id) & 1023 as key, bool_or(coalesce(x.exclusive, false)) as exclusive
    from unnest(p_users, p_exclusive) as x(user_id, exclusive) group by 2 order by 2
  ) s;
end
$fn$;

-- One append (the hot path): whether it is above both floors and outside every cut of its thread.
create function may_append(p_user text, p_thread text, p_id text) returns boolean language plpgsql volatile
set search_path from current as $fn$
begin
  perform pg_advisory_xact_lock_shared(hashtext(current_schema()), hashtext(p_user) & 1023); -- lock_users's key
  return p_id > coalesce((select history_floor from users where user_id = p_user), '') collate "C"
    and p_id > coalesce((select floor from threads where user_id = p_user and thread = p_thread), '') collate "C"
    and not exists (select 1 from cuts where user_id = p_user and thread = p_thread and from_id <= p_id and to_id >= p_id);
end
$fn$;

-- One cut's delete (deleteMessage, truncateAfter) after its user's lock, exclusive: the rest of the
-- cut stays in the caller's one statement, whose own snapshot predates the lock.
create function delete_range(p_user text, p_thread text, p_from text, p_to text) returns void language plpgsql volatile
set search_path from current as $fn$
begin
  perform lock_users(array[p_user], array[true]);
  delete from messages where user_id = p_user and thread = p_thread and id >= p_from collate "C" and id <= p_to collate "C";
end
$fn$;

-- Many appends, as may_append: the positions (from 1) of those to store.
create function appendable(p_users text[], p_threads text[], p_ids text[]) returns setof bigint language plpgsql volatile
set search_path from current as $fn$
begin
  perform lock_users(p_users, null);
  return query
    select x.n from unnest(p_users, p_threads, p_ids) with ordinality as x(user_id, thread, id, n)
    left join users f on f.user_id = x.user_id
    left join threads h on h.user_id = x.user_id and h.thread = x.thread
    where x.id > coalesce(f.history_floor, '') collate "C" and x.id > coalesce(h.floor, '') collate "C"
      and not exists (
        select 1 from cuts c where c.user_id = x.user_id and c.thread = x.thread and c.from_id <= x.id collate "C" and c.to_id >= x.id collate "C");
end
$fn$;`,
  },
];

/** The text run for a migration: the ledger, the change, and its row in the ledger. */
export function migrationText(migration: Migration): string {
  return `${LEDGER}\n\n${migration.sql}\n\ninsert into schema_migrations (version, name) values (${migration.version}, '${migration.name}');\n`;
}

export function migrations(): readonly Migration[] {
  return MIGRATIONS;
}
