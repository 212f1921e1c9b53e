import type { Options, PendingQuery, Row, RowList, Sql, TransactionSql } from 'postgres';
import type {
  AdapterConfig,
  DeadLetterRecord,
  HistoryRead,
  HistoryReadOptions,
  ReadOptions,
  RetentionRule,
  StorageAdapter,
  ThreadRecord,
  ThreadRecordPage,
  UserRecord,
  WriteOutcome,
} from './contract.js';
import { withDeadline } from '../routing/deadline.js';
import { adapterInUse, ConfigurationError, ErrorCode, TierError } from '../errors.js';
import { loadPeer } from '../load.js';
import { maskUrl } from '../logger.js';
import {
  applyOp,
  emptyUserState,
  MAIN_THREAD,
  type AppendOp,
  type CutOp,
  type EditOp,
  type Op,
  type SummaryOp,
  type SummaryRecord,
  type UserState,
} from '../model/ops.js';
import { idTime } from '../model/ids.js';
import { defaultTokens } from '../model/budget.js';
import { positive } from '../options.js';
import { checkUrl } from '../model/validate.js';
import type { JsonObject, Message, MessageStatus, Role } from '../types.js';
import { migrations, migrationText } from './postgres-migrations.js';
import type { DataKeyRecord } from '../crypto/keys.js';

export interface PostgresAdapterOptions {
  /** `postgres://user:password@host:port/database`; `?sslmode=require` turns on TLS. */
  url?: string;
  /** A ready postgres.js `sql`; the store uses it as it is and never ends it. */
  sql?: Sql;
  /** Schema of the store's tables, created by the migrations if missing. @default 'tcs' */
  schema?: string;
  /** Deadline of every query, in milliseconds; past it the query is abandoned and a pool the adapter opened is replaced. @default 2000 */
  timeoutMs?: number;
  /** Deadline of opening a connection (and of the first migration check), in milliseconds. @default 2000 */
  connectTimeoutMs?: number;
  /** Connections in the pool the adapter opens. @default 10 */
  max?: number;
  /**
   * A read replica (or a read-only pooler). Reads go there, except reads that refill Redis, which
   * must see every committed write and go to `url`. Reads from a replica may lag behind writes.
   */
  readUrl?: string;
  /** Named prepared statements; turn off behind PgBouncer in transaction mode (before 1.21). @default true */
  preparedStatements?: boolean;
  /** Extra postgres.js options for the pool the adapter opens (ignored with `sql`). */
  postgresOptions?: Options<Record<string, never>>;
}

/** What `purge` removes: one of `keepLast` (per thread) and `before`; `batch`: most messages per batch. */
export interface PurgeRule {
  keepLast?: number;
  before?: Date;
  batch: number;
  /** Only say what would go. */
  dryRun?: boolean;
  /** With `keepLast`: only these users' threads (the syncer's retention: the users it wrote to). */
  users?: readonly string[];
}

/** Messages a purge batch removed (or would remove) from one thread. */
export interface PurgedThread {
  user: string;
  thread: string;
  messages: number;
}

type Postgres = typeof import('postgres');
type Tx = TransactionSql;

const POSTGRES_PROTOCOLS = ['postgres:', 'postgresql:'];
const UNREACHABLE_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '57014',
]);

/** The PostgreSQL tier: the system of record. Every query has a deadline. */
export class PostgresAdapter implements StorageAdapter {
  readonly name = 'postgres';
  readonly schema: string;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  #sql: Sql;
  #read: Sql | undefined;
  readonly #open: (() => Sql) | undefined;
  readonly #openRead: (() => Sql) | undefined;
  readonly #url: string | undefined;
  readonly #readUrl: string | undefined;
  readonly #t: {
    messages: string;
    users: string;
    threads: string;
    cuts: string;
    summaries: string;
    dataKeys: string;
    lockUsers: string;
    mayAppend: string;
    appendable: string;
    deleteRange: string;
  };
  #migrated: Promise<void> | undefined;
  #bound = false;
  #closed = false;

  constructor(options: PostgresAdapterOptions = {}) {
    this.schema = checkSchema(options.schema ?? 'tcs');
    this.timeoutMs = positive(options.timeoutMs, 'PostgresAdapter: timeoutMs', 2000);
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 'PostgresAdapter: connectTimeoutMs', 2000);
    this.#t = {
      messages: `${this.schema}.messages`,
      users: `${this.schema}.users`,
      threads: `${this.schema}.threads`,
      cuts: `${this.schema}.cuts`,
      summaries: `${this.schema}.summaries`,
      dataKeys: `${this.schema}.data_keys`,
      lockUsers: `${this.schema}.lock_users`,
      mayAppend: `${this.schema}.may_append`,
      appendable: `${this.schema}.appendable`,
      deleteRange: `${this.schema}.delete_range`,
    };
    if (options.sql) {
      // The adapter reads columns by their SQL names: a client that renames them would break it.
      const transform = (options.sql.options as { transform?: { column?: { from?: unknown }; row?: { from?: unknown } } }).transform;
      if (transform?.column?.from || transform?.row?.from) {
        throw new ConfigurationError(
          ErrorCode.INVALID_OPTION,
          'PostgresAdapter: pass a postgres.js sql without column or row transforms (e.g. postgres.camel), or a url',
        );
      }
      this.#sql = options.sql;
      return;
    }
    const url = checkUrl(options.url ?? 'postgres://postgres@127.0.0.1:5432/postgres', 'PostgresAdapter: url', POSTGRES_PROTOCOLS);
    this.#url = url;
    this.#readUrl = options.readUrl === undefined ? undefined : checkUrl(options.readUrl, 'PostgresAdapter: readUrl', POSTGRES_PROTOCOLS);
    const postgres = loadPeer<Postgres>('postgres', 'PostgresAdapter');
    const max = positive(options.max, 'PostgresAdapter: max', 10);
    const open = (target: string) => () =>
      postgres(target, {
        max,
        connect_timeout: Math.ceil(this.connectTimeoutMs / 1000),
        idle_timeout: 60,
        max_lifetime: 30 * 60,
        prepare: options.preparedStatements ?? true,
        onnotice: () => {},
        connection: { application_name: 'tiered-conversation-store' },
        ...options.postgresOptions,
      });
    this.#open = open(url);
    this.#openRead = this.#readUrl === undefined ? undefined : open(this.#readUrl);
    this.#sql = this.#open();
    this.#read = this.#openRead?.();
  }

  /** The pool a read goes to: the replica, unless it must be fresh. */
  #reader(options: ReadOptions | undefined): Sql {
    return options?.fresh || !this.#read ? this.#sql : this.#read;
  }

  /** The pool in use (it changes when a hung pool is replaced). */
  get sql(): Sql {
    return this.#sql;
  }

  describe(): string {
    const target = !this.#url ? 'a client passed in' : this.#readUrl ? `${maskUrl(this.#url)} (reads: ${maskUrl(this.#readUrl)})` : maskUrl(this.#url);
    return `${target} (schema ${this.schema})`;
  }

  secrets(): string[] {
    return [this.#url, this.#readUrl].filter((url): url is string => url !== undefined);
  }

  bind(_config: AdapterConfig): void {
    if (this.#bound) throw adapterInUse('PostgresAdapter');
    this.#bound = true;
  }

  /** Applies pending migrations once (concurrent processes wait on an advisory lock). */
  async connect(): Promise<void> {
    this.#migrated ??= this.#migrate().catch((error: unknown) => {
      this.#migrated = undefined;
      throw error;
    });
    await this.#migrated;
  }

  async ping(): Promise<void> {
    await this.#q(this.#sql`select 1`);
  }

  async write(ops: readonly Op[]): Promise<WriteOutcome[] | undefined> {
    // Concurrent syncers may lock the same thread rows: a deadlock or serialization failure
    // aborts one of them, which is retried (it is not the op's fault, so never a dead letter).
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#write(ops);
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        if (attempt >= 3 || (code !== '40P01' && code !== '40001')) throw error;
      }
    }
  }

  async #write(ops: readonly Op[]): Promise<WriteOutcome[] | undefined> {
    const only = ops.length === 1 ? ops[0] : undefined;
    if (only?.kind === 'append') return [await this.#appendOne(only)];
    if (only?.kind === 'cut') return void (await this.#q(this.#cutOne(only)));
    if (ops.length === 0) return undefined;
    const { steps, locks } = this.#steps(foldBatch(ops));
    // One statement is atomic by itself: a transaction only when a batch needs several or its
    // users' locks (taken first, see migration 9), and then its statements go out pipelined
    // (BEGIN, the statements, COMMIT: three round trips).
    if (steps.length === 1 && locks.size === 0) await this.#q((steps[0] as Step)(this.#sql));
    else if (steps.length > 0) {
      const all = locks.size === 0 ? steps : [(tx: Sql | Tx) => this.#lockUsers(tx, locks), ...steps];
      await withDeadline(
        this.name,
        this.timeoutMs * 5,
        this.#sql.begin((tx) => all.map((step) => step(tx))),
      );
    }
    return undefined;
  }

  /** Takes the users' locks (true: exclusive, for a removal) until the transaction ends. */
  #lockUsers(tx: Sql | Tx, locks: ReadonlyMap<string, boolean>): PendingQuery<Row[]> {
    return tx`select ${tx(this.#t.lockUsers)}(${[...locks.keys()]}::text[], ${[...locks.values()].map(String)}::text[]::boolean[])`;
  }

  /** One message, one statement (the hot path); with an idempotency key, says if it repeated one. */
  async #appendOne(op: AppendOp): Promise<WriteOutcome> {
    const inserted = await this.#q(this.#insertOne(this.#sql, op));
    if (inserted.length > 0 || op.key === undefined) return true;
    const sql = this.#sql;
    const [first] = await this.#q(sql`
      select id from ${sql(this.#t.messages)} where user_id = ${op.user} and idempotency_key = ${op.key}`);
    return first && first.id !== op.id ? (first.id as string) : true;
  }

  /** The newest `limit` of a thread with its floor and cuts, in one round trip. */
  async readHistory(user: string, limit: number, options?: HistoryReadOptions): Promise<HistoryRead> {
    const sql = this.#reader(options);
    const thread = options?.thread ?? MAIN_THREAD;
    // The floor and the cuts are computed once (materialized: inlined, the floor's two look-ups ran
    // once per use); generic plans of this shape run in about two thirds of the time.
    const rows = await this.#q(sql`
      with f as materialized (
        select greatest(
          coalesce((select history_floor from ${sql(this.#t.users)} where user_id = ${user}), ''),
          coalesce((select floor from ${sql(this.#t.threads)} where user_id = ${user} and thread = ${thread}), '')
        ) collate "C" as floor
      ), c as materialized (
        select array_agg(from_id order by from_id, to_id) as cut_from, array_agg(to_id order by from_id, to_id) as cut_to
        from ${sql(this.#t.cuts)}, f where user_id = ${user} and thread = ${thread} and to_id > f.floor
      )
      select f.floor, c.cut_from, c.cut_to, m.id, m.thread, m.role, m.content, m.meta, m.created_at, m.status, m.updated_at, m.tokens
      from f cross join c
      left join lateral (
        select id, thread, role, content, meta, created_at, status, updated_at, tokens from ${sql(this.#t.messages)}
        where user_id = ${user} and thread = ${thread} and id > f.floor
        order by id desc limit ${limit}
      ) m on true`);
    const messages: Message[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const row = rows[i] as Row;
      if (row.id !== null) messages.push(toMessage(row));
    }
    const first = rows[0];
    const read: HistoryRead = { messages, floor: (first?.floor as string | undefined) ?? '' };
    const from = (first?.cut_from as string[] | undefined) ?? [];
    const to = (first?.cut_to as string[] | undefined) ?? [];
    if (from.length > 0) read.cuts = from.map((f, i) => [f, to[i] as string]);
    return read;
  }

  async readSummary(user: string, thread: string, options?: ReadOptions): Promise<SummaryRecord | null> {
    const sql = this.#reader(options);
    const [row] = await this.#q(sql`
      select text, summary_v, covers, dirty from ${sql(this.#t.summaries)} where user_id = ${user} and thread = ${thread} and text is not null`);
    return row ? { text: row.text as string, id: row.summary_v as string, covers: row.covers as string, dirty: row.dirty as string } : null;
  }

  /** The summary run's lease, in the thread's row of `summaries` (a row without a summary when it has none yet). */
  async leaseSummary(user: string, thread: string, token: string, ttlMs: number): Promise<boolean> {
    const sql = this.#sql;
    const rows = await this.#q(sql`
      insert into ${sql(this.#t.summaries)} as s (user_id, thread, lease, lease_until)
      values (${user}, ${thread}, ${token}, now() + ${ttlMs} * interval '1 millisecond')
      on conflict (user_id, thread) do update set lease = excluded.lease, lease_until = excluded.lease_until
      where s.lease is null or s.lease = excluded.lease or s.lease_until < now()
      returning 1`);
    return rows.length > 0;
  }

  async releaseSummary(user: string, thread: string, token: string): Promise<void> {
    const sql = this.#sql;
    await this.#q(sql`
      update ${sql(this.#t.summaries)} set lease = null, lease_until = null where user_id = ${user} and thread = ${thread} and lease = ${token}`);
  }

  async readMessage(user: string, id: string): Promise<Message | null> {
    const sql = this.#reader(undefined);
    const [row] = await this.#q(sql`
      select id, thread, role, content, meta, created_at, status, updated_at, tokens from ${sql(this.#t.messages)}
      where user_id = ${user} and id = ${id}`);
    return row ? toMessage(row) : null;
  }

  /**
   * Threads holding messages or a title, most recently active first, from `threads` along
   * `threads_recent`; the cursor is the last row's (updated_at, thread), base64url, for keyset paging.
   */
  async listThreads(user: string, limit: number, cursor: string | null): Promise<ThreadRecordPage> {
    const sql = this.#reader(undefined);
    const after = decodeCursor(cursor);
    // After a cursor, threads_after (migration 5) walks threads_recent from it.
    const rows = await this.#q(
      after
        ? sql`select * from ${sql(`${this.schema}.threads_after`)}(${user}, ${after[0]}::text::timestamptz, ${after[1]}::text, ${limit + 1})`
        : sql`
          select thread, title, messages, created_at, updated_at, updated_at::text as at, last_id from ${sql(this.#t.threads)}
          where user_id = ${user} and (messages > 0 or title is not null)
          order by updated_at desc, thread
          limit ${limit + 1}`,
    );
    const threads: ThreadRecord[] = rows.slice(0, limit).map((row) => ({
      id: row.thread as string,
      title: row.title as string | null,
      messages: row.messages as number,
      createdAt: row.created_at as Date,
      updatedAt: row.updated_at as Date,
      lastId: row.last_id as string,
    }));
    const last = rows.length > limit ? rows[limit - 1] : undefined;
    return { threads, cursor: last ? encodeCursor(last.at as string, last.thread as string) : null };
  }

  /** Drafts still streaming that were started before `before`, oldest first (along `messages_streaming`). */
  async streamingDrafts(before: Date, limit: number): Promise<{ user: string; message: Message }[]> {
    const sql = this.#sql;
    const rows = await this.#q(sql`
      select user_id, id, thread, role, content, meta, created_at, status, updated_at, tokens from ${sql(this.#t.messages)}
      where status = 'streaming' and created_at < ${before}
      order by created_at limit ${limit}`);
    return rows.map((row) => ({ user: row.user_id as string, message: toMessage(row) }));
  }

  async readUser(user: string, options?: ReadOptions): Promise<UserRecord> {
    const sql = this.#reader(options);
    const [row] = await this.#q(sql`
      select phone, phone_v, booking, booking_v, subscribed, subscribed_v from ${sql(this.#t.users)} where user_id = ${user}`);
    const stamp = <T>(value: unknown, id: unknown, empty: T) => ({ value: (value ?? empty) as T, id: (id as string | null) ?? '' });
    return {
      phone: stamp<string | null>(row?.phone, row?.phone_v, null),
      booking: stamp<JsonObject | null>(row?.booking, row?.booking_v, null),
      subscribed: stamp(row?.subscribed, row?.subscribed_v, false),
    };
  }

  async readSubscribers(options?: ReadOptions): Promise<string[]> {
    const sql = this.#reader(options);
    const rows = await this.#q(sql`select user_id from ${sql(this.#t.users)} where subscribed`);
    return rows.map((row) => row.user_id as string);
  }

  async isSubscriber(user: string): Promise<boolean> {
    const sql = this.#reader(undefined);
    const [row] = await this.#q(sql`select subscribed from ${sql(this.#t.users)} where user_id = ${user}`);
    return row?.subscribed === true;
  }

  /**
   * The syncer's retention: {@link purge} with the same floors, so a journaled append of a removed
   * message replayed later stays removed. `keepLast` applies to each thread of `users`.
   */
  async enforceRetention(rule: RetentionRule): Promise<number> {
    let removed = 0;
    const run = async (purge: PurgeRule) => {
      for await (const batch of this.purge(purge)) for (const thread of batch) removed += thread.messages;
    };
    if (rule.keepLast !== undefined && rule.users.length > 0) await run({ keepLast: rule.keepLast, users: rule.users, batch: rule.batch });
    if (rule.before !== undefined) await run({ before: rule.before, batch: rule.batch });
    return removed;
  }

  /**
   * Deletes old messages in batches of at most `rule.batch`, yielding what each batch removed
   * (or, with `dryRun`, would remove) per user and thread. `keepLast`: all but the newest
   * `keepLast` messages of every thread of every user; `before`: messages created before it
   * (message ids are time-ordered: a thread loses the messages up to its newest one older than
   * that). Each batch raises the floor of the threads it cuts to the newest id it removes, in the
   * same transaction as the delete: a journaled append of a removed message replayed later is
   * refused like one of a cleared thread, and reads lay pending writes over that floor. The
   * delete trigger keeps the threads' counts.
   */
  async *purge(rule: PurgeRule): AsyncGenerator<PurgedThread[]> {
    if ((rule.keepLast === undefined) === (rule.before === undefined)) throw new TypeError('purge: give keepLast or before');
    const sql = this.#sql;
    const t = this.#t;
    const batch = rule.batch;
    // Where the previous batch ended: [user, thread, id] (keepLast) or [created_at, user, id] (before).
    let cursor: [string, string, string] | undefined;
    for (;;) {
      let rows: Row[];
      if (rule.keepLast !== undefined) {
        const [cu, ct, ci] = cursor ?? ['', '', ''];
        rows = await this.#q(sql`
          select t.user_id, t.thread, m.id from ${sql(t.threads)} t
          cross join lateral (
            select x.id from ${sql(t.messages)} x where x.user_id = t.user_id and x.thread = t.thread order by x.id desc offset ${rule.keepLast} limit 1
          ) c
          cross join lateral (
            select y.id from ${sql(t.messages)} y
            where y.user_id = t.user_id and y.thread = t.thread and y.id <= c.id
              and y.id > (case when t.user_id = ${cu}::text collate "C" and t.thread = ${ct}::text collate "C" then ${ci}::text else '' end) collate "C"
            order by y.id limit ${batch}
          ) m
          where (t.user_id, t.thread) >= (${cu}::text collate "C", ${ct}::text collate "C")
            ${rule.users ? sql`and t.user_id = any(${rule.users as string[]}::text[])` : sql``}
          order by t.user_id, t.thread, m.id
          limit ${batch}`);
        const last = rows.at(-1);
        if (last) cursor = [last.user_id as string, last.thread as string, last.id as string];
      } else {
        const before = rule.before as Date;
        rows = await this.#q(
          cursor
            ? sql`
              select user_id, thread, id, created_at::text as at from ${sql(t.messages)}
              where created_at < ${before} and created_at >= ${cursor[0]}::timestamptz
                and (created_at, user_id, id) > (${cursor[0]}::timestamptz, ${cursor[1]}::text collate "C", ${cursor[2]}::text collate "C")
              order by created_at, user_id, id limit ${batch}`
            : sql`
              select user_id, thread, id, created_at::text as at from ${sql(t.messages)}
              where created_at < ${before} order by created_at, user_id, id limit ${batch}`,
        );
        const last = rows.at(-1);
        if (last) cursor = [last.at as string, last.user_id as string, last.id as string];
      }
      if (rows.length === 0) return;
      const doomed = new Map<string, PurgedThread & { cutoff: string }>();
      for (const row of rows) {
        const key = `${row.user_id as string}\n${row.thread as string}`;
        const found = doomed.get(key);
        if (!found) doomed.set(key, { user: row.user_id as string, thread: row.thread as string, messages: 1, cutoff: row.id as string });
        else {
          found.messages++;
          if ((row.id as string) > found.cutoff) found.cutoff = row.id as string;
        }
      }
      const cuts = [...doomed.values()];
      if (rule.dryRun) yield cuts.map(({ user, thread, messages }) => ({ user, thread, messages }));
      else yield await this.#purgeBatch(cuts);
      if (rows.length < batch) return;
    }
  }

  /** Raises the threads' floors to their cutoffs and deletes the messages at or below them, in one transaction, under the users' locks. */
  async #purgeBatch(cuts: (PurgedThread & { cutoff: string })[]): Promise<PurgedThread[]> {
    const t = this.#t;
    const users = cuts.map((c) => c.user);
    const threads = cuts.map((c) => c.thread);
    const cutoffs = cuts.map((c) => c.cutoff);
    const work = this.#sql.begin(async (tx) => {
      await this.#lockUsers(tx, new Map(users.map((user) => [user, true])));
      await tx`
        insert into ${tx(t.threads)} as h (user_id, thread, floor)
        select * from unnest(${users}::text[], ${threads}::text[], ${cutoffs}::text[])
        on conflict (user_id, thread) do update set floor = greatest(h.floor, excluded.floor)`;
      const gone = await tx`
        with gone as (
          delete from ${tx(t.messages)} m
          using unnest(${users}::text[], ${threads}::text[], ${cutoffs}::text[]) as c(user_id, thread, cutoff)
          where m.user_id = c.user_id and m.thread = c.thread and m.id <= c.cutoff collate "C"
          returning m.user_id, m.thread
        )
        select user_id, thread, count(*)::int as n from gone group by user_id, thread order by user_id, thread`;
      // Cuts the new floors cover are of no more use.
      await tx`
        delete from ${tx(t.cuts)} c
        using unnest(${users}::text[], ${threads}::text[], ${cutoffs}::text[]) as f(user_id, thread, floor)
        where c.user_id = f.user_id and c.thread = f.thread and c.to_id <= f.floor collate "C"`;
      return gone.map((row) => ({ user: row.user_id as string, thread: row.thread as string, messages: row.n as number }));
    });
    return withDeadline(this.name, this.timeoutMs * 5, work);
  }

  /** What PostgreSQL holds for one user, for the CLI's inspect: its threads and their messages (the kept counts), and whether it has a users row. */
  async footprint(user: string): Promise<{ threads: number; messages: number; userRow: boolean }> {
    const sql = this.#sql;
    const [row] = await this.#q(sql`
      select count(*)::int as threads, coalesce(sum(messages), 0)::int as messages,
        exists(select 1 from ${sql(this.#t.users)} where user_id = ${user}) as user_row
      from ${sql(this.#t.threads)} where user_id = ${user} and (messages > 0 or title is not null)`);
    return { threads: (row?.threads as number) ?? 0, messages: (row?.messages as number) ?? 0, userRow: row?.user_row === true };
  }

  /** Keeps a write PostgreSQL refused for good in `dead_letters`, as JSON text (which any row can hold). */
  async recordDeadLetter(letter: DeadLetterRecord): Promise<void> {
    const sql = this.#sql;
    await this.#q(sql`
      insert into ${sql(`${this.schema}.dead_letters`)} (user_id, op_id, kind, entry, error)
      values (${letter.user}, ${letter.id}, ${letter.kind}, ${letter.entry}, ${letter.error})`);
  }

  // ---- data keys (encryption at rest; see src/crypto/keys.ts)

  async readDataKeys(user: string): Promise<DataKeyRecord[]> {
    const sql = this.#sql;
    const rows = await this.#q(sql`
      select key_id, master_id, wrapped, destroyed_by from ${sql(this.#t.dataKeys)} where user_id = ${user} order by key_id`);
    return rows.map(dataKeyOf);
  }

  async saveDataKey(user: string, record: DataKeyRecord): Promise<void> {
    const sql = this.#sql;
    await this.#q(sql`
      insert into ${sql(this.#t.dataKeys)} (user_id, key_id, master_id, wrapped)
      values (${user}, ${record.id}, ${record.master}, ${record.wrapped}) on conflict do nothing`);
  }

  async destroyDataKeys(user: string, upTo: string): Promise<void> {
    const sql = this.#sql;
    await this.#q(sql`
      update ${sql(this.#t.dataKeys)} set master_id = '', wrapped = '', destroyed_by = ${upTo}
      where user_id = ${user} and key_id <= ${upTo} and destroyed_by is null`);
  }

  async staleDataKeys(
    master: string,
    cursor: string | null,
    limit: number,
  ): Promise<{ keys: { user: string; record: DataKeyRecord }[]; cursor: string | null }> {
    const sql = this.#sql;
    const [afterUser, afterKey] = cursor === null ? ['', ''] : (JSON.parse(cursor) as [string, string]);
    const rows = await this.#q(sql`
      select user_id, key_id, master_id, wrapped, destroyed_by from ${sql(this.#t.dataKeys)}
      where destroyed_by is null and master_id <> ${master} and (user_id, key_id) > (${afterUser}::text collate "C", ${afterKey}::text collate "C")
      order by user_id, key_id limit ${limit}`);
    const keys = rows.map((row) => ({ user: row.user_id as string, record: dataKeyOf(row) }));
    const last = keys.at(-1);
    return { keys, cursor: keys.length < limit || !last ? null : JSON.stringify([last.user, last.record.id]) };
  }

  async rewrapDataKey(user: string, id: string, from: string, to: { master: string; wrapped: string }): Promise<boolean> {
    const sql = this.#sql;
    const rows = await this.#q(sql`
      update ${sql(this.#t.dataKeys)} set master_id = ${to.master}, wrapped = ${to.wrapped}
      where user_id = ${user} and key_id = ${id} and wrapped = ${from} and destroyed_by is null returning key_id`);
    return rows.length > 0;
  }

  isUnavailable(error: unknown): boolean {
    if (error instanceof TierError) return error.code === ErrorCode.TIER_TIMEOUT;
    const code = (error as { code?: unknown } | null)?.code;
    return typeof code === 'string' && (UNREACHABLE_CODES.has(code) || code.startsWith('08'));
  }

  /** Replaces a pool the adapter opened (its connections may hang on a dead server). */
  async reset(): Promise<void> {
    if (!this.#open || this.#closed) return;
    const old = [this.#sql, this.#read];
    this.#sql = this.#open();
    this.#read = this.#openRead?.();
    await Promise.all(old.map((pool) => pool?.end({ timeout: 0 }).catch(() => {})));
  }

  async close(): Promise<void> {
    if (this.#closed || !this.#open) return;
    this.#closed = true;
    const timeout = Math.ceil(this.timeoutMs / 1000);
    await Promise.all([this.#sql, this.#read].map((pool) => pool?.end({ timeout }).catch(() => {})));
  }

  /** Every migration as the SQL text it runs, for `dist/sql/` and DBAs. */
  static migrations(): { file: string; sql: string }[] {
    return migrations().map((m) => ({ file: `${String(m.version).padStart(3, '0')}_${m.name}.sql`, sql: migrationText(m) }));
  }

  async #migrate(): Promise<void> {
    const work = this.#sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext(${`tiered-conversation-store:${this.schema}`}))`;
      await tx`create schema if not exists ${tx(this.schema)}`;
      await tx`set local search_path to ${tx(this.schema)}`;
      const [ledger] = await tx`select to_regclass('schema_migrations') is not null as present`;
      const applied = ledger?.present ? new Set((await tx`select version from schema_migrations`).map((r) => r.version as number)) : new Set();
      for (const migration of migrations()) {
        if (!applied.has(migration.version)) await tx.unsafe(migrationText(migration)).simple();
      }
    });
    await withDeadline(this.name, this.connectTimeoutMs, work);
  }

  /**
   * The hot path: one statement. An append at or below the user's floor or its thread's floor, or
   * inside a cut of its thread, is refused (may_append reads them after the user's lock, see
   * migration 9); one that is stored is counted into its thread by the same statement (it returns
   * a row only then).
   */
  #insertOne(sql: Sql, op: AppendOp): PendingQuery<Row[]> {
    const meta = op.meta === undefined ? null : sql.json(op.meta);
    const t = this.#t;
    return sql`
      with inserted as (
      insert into ${sql(t.messages)} (user_id, id, thread, role, content, meta, created_at, idempotency_key, status, edit_v, updated_at, tokens)
      select ${op.user}, ${op.id}, ${op.thread}, ${op.role}, ${op.content}, ${meta}::jsonb, ${new Date(op.createdAt)},
        ${op.key ?? null}::text, ${op.status ?? null}::text, ${op.v ?? null}::text, ${op.updatedAt === undefined ? null : new Date(op.updatedAt)}::timestamptz,
        ${op.tokens ?? null}::integer
      where ${sql(t.mayAppend)}(${op.user}, ${op.thread}, ${op.id})
      on conflict do nothing
      returning user_id, thread, id, created_at, updated_at
    )
    insert into ${sql(t.threads)} as h (user_id, thread, messages, created_at, updated_at, last_id)
    select user_id, thread, 1, created_at, greatest(created_at, updated_at), id from inserted
    ${this.#countInto(sql)}
    returning h.last_id`;
  }

  /**
   * The conflict clause counting stored messages into their threads (after an insert of their
   * rows into `threads as h`). A thread emptied by a clear or a drop starts again from them.
   */
  #countInto(sql: Sql | Tx): PendingQuery<Row[]> {
    return sql`
    on conflict (user_id, thread) do update set
      messages = h.messages + excluded.messages,
      created_at = case when h.messages = 0 or h.created_at is null then excluded.created_at else least(h.created_at, excluded.created_at) end,
      updated_at = case when (h.messages = 0 and h.title is null) or h.updated_at is null then excluded.updated_at
        else greatest(h.updated_at, excluded.updated_at) end,
      last_id = greatest(h.last_id, excluded.last_id)`;
  }

  /**
   * The statements a batch needs, in order, as few as it can: one statement records what changes
   * (user fields and floors, thread floors and titles, cuts) and, for a batch without appends,
   * takes out what they remove; a batch with appends inserts them between the two, so an append
   * the batch removes is refused or taken out again. An erasure then drops the user's emptied
   * threads (which needs the counts the delete trigger left), and edits run last, seeing every
   * append of the batch. A single clear, drop, title or edit is one statement; all but the edit
   * run in a transaction after their users' locks (see `locks`).
   */
  #steps(batch: Batch): { steps: Step[]; locks: Map<string, boolean> } {
    const t = this.#t;
    const steps: Step[] = [];
    const { appends, users, threads, cuts, edits, summaries, changes } = batch;
    const userFields = [...users].filter(([, p]) => p.phone.id !== '' || p.booking.id !== '' || p.subscribed.id !== '' || p.floor !== '');
    // Id ranges to take out of stored rows: [from, to] of a thread, or of every thread (thread null: an erasure).
    const ranges: { user: string; thread: string | null; from: string; to: string }[] = [];
    for (const [user, p] of userFields) if (p.floor !== '') ranges.push({ user, thread: null, from: '', to: p.floor });
    for (const th of threads) if (th.floor !== '') ranges.push({ user: th.user, thread: th.thread, from: '', to: th.floor });
    const floors = [...ranges];
    for (const c of cuts) ranges.push({ user: c.user, thread: c.thread, from: c.from, to: c.to });
    const record: (Step | false)[] = [
      userFields.length > 0 && ((tx) => this.#upsertUsers(tx, new Map(userFields))),
      threads.length > 0 && ((tx) => this.#upsertThreads(tx, threads)),
      cuts.length > 0 &&
        ((tx) => tx`
          insert into ${tx(t.cuts)} (user_id, thread, from_id, to_id)
          select * from unnest(${cuts.map((c) => c.user)}::text[], ${cuts.map((c) => c.thread)}::text[], ${cuts.map((c) => c.from)}::text[], ${cuts.map((c) => c.to)}::text[])
          on conflict do nothing`),
    ];
    const remove: (Step | false)[] = [
      ranges.length > 0 &&
        ((tx) => tx`
          delete from ${tx(t.messages)} m
          using unnest(${ranges.map((r) => r.user)}::text[], ${ranges.map((r) => r.thread)}::text[], ${ranges.map((r) => r.from)}::text[], ${ranges.map((r) => r.to)}::text[])
            as r(user_id, thread, from_id, to_id)
          where m.user_id = r.user_id and (r.thread is null or m.thread = r.thread) and m.id >= r.from_id collate "C" and m.id <= r.to_id collate "C"`),
      // A summary as old as a floor of this batch goes with the messages it sums up.
      floors.length > 0 &&
        ((tx) => tx`
          delete from ${tx(t.summaries)} s
          using unnest(${floors.map((r) => r.user)}::text[], ${floors.map((r) => r.thread)}::text[], ${floors.map((r) => r.to)}::text[]) as f(user_id, thread, floor)
          where s.user_id = f.user_id and (f.thread is null or s.thread = f.thread) and s.summary_v <= f.floor collate "C"`),
      // Cuts a floor of this batch covers are of no more use (older floors dropped theirs).
      floors.length > 0 &&
        ((tx) => tx`
          delete from ${tx(t.cuts)} c
          using unnest(${floors.map((r) => r.user)}::text[], ${floors.map((r) => r.thread)}::text[], ${floors.map((r) => r.to)}::text[]) as f(user_id, thread, floor)
          where c.user_id = f.user_id and (f.thread is null or c.thread = f.thread) and c.to_id <= f.floor collate "C"`),
    ];
    // Cuts mark the summaries they reach: with the first statement when the batch writes no
    // summary (and so no floor takes one out), else in a statement of their own after those.
    const cutMarks = changes.filter((change) => change.cut);
    const marksFirst = cutMarks.length > 0 && summaries.length === 0 && floors.length === 0;
    if (marksFirst) record.push((tx) => this.#markSummaries(tx, cutMarks));
    if (appends.length === 0) pushCombined(steps, [...record, ...remove]);
    else {
      pushCombined(steps, record);
      steps.push((tx) => this.#insertMany(tx, appends));
      pushCombined(steps, remove);
    }
    const erased = userFields.filter(([, p]) => p.floor !== '').map(([user]) => user);
    if (erased.length > 0) {
      // An erased user's threads go, but for a newer clear, title or message (ops commute: a
      // newer one may have arrived first); the titles older than the erasure go in any case.
      steps.push(
        (tx) => tx`
          with erased as (
            select user_id, history_floor from ${tx(t.users)} where user_id = any(${erased}::text[]) and history_floor <> ''
          ), gone as (
            delete from ${tx(t.threads)} h using erased e
            where h.user_id = e.user_id and h.messages = 0 and h.floor <= e.history_floor and coalesce(h.title_v, '') <= e.history_floor
            returning h.user_id
          )
          update ${tx(t.threads)} h set title = null, title_v = e.history_floor, title_at = null from erased e
          where h.user_id = e.user_id and h.title_v <= e.history_floor and (h.messages > 0 or h.floor > e.history_floor)`,
      );
    }
    if (summaries.length > 0) steps.push((tx) => this.#upsertSummaries(tx, summaries));
    // Edits mark summaries in their own statement.
    if (edits.length > 0) steps.push((tx) => this.#edit(tx, edits));
    if (cutMarks.length > 0 && !marksFirst) steps.push((tx) => this.#markSummaries(tx, cutMarks));
    // The users' locks (migration 9): exclusive where the batch removes, shared where it writes
    // above floors. Appends alone lock in their statement; with other steps, before any row lock.
    const locks = new Map<string, boolean>();
    for (const r of ranges) locks.set(r.user, true);
    for (const s of [...threads.filter((th) => th.title.id !== ''), ...summaries]) if (!locks.has(s.user)) locks.set(s.user, false);
    if (locks.size > 0 || steps.length > 1) for (const a of appends) if (!locks.has(a.user)) locks.set(a.user, false);
    return { steps, locks };
  }

  /** The newest summary of each thread, where newer than the stored one and above the user's and the thread's floors. */
  #upsertSummaries(tx: Sql | Tx, summaries: SummaryOp[]): PendingQuery<Row[]> {
    const col = <T>(pick: (op: SummaryOp) => T) => summaries.map(pick);
    const t = this.#t;
    return tx`
      insert into ${tx(t.summaries)} as s (user_id, thread, text, summary_v, covers, dirty)
      select x.user_id, x.thread, x.text, x.id, x.covers, ''
      from unnest(${col((op) => op.user)}::text[], ${col((op) => op.thread)}::text[], ${col((op) => op.text)}::text[], ${col((op) => op.id)}::text[],
        ${col((op) => op.covers)}::text[]) as x(user_id, thread, text, id, covers)
      left join ${tx(t.users)} u on u.user_id = x.user_id
      left join ${tx(t.threads)} h on h.user_id = x.user_id and h.thread = x.thread
      where x.id > coalesce(u.history_floor, '') collate "C" and x.id > coalesce(h.floor, '') collate "C"
      on conflict (user_id, thread) do update set text = excluded.text, summary_v = excluded.summary_v, covers = excluded.covers,
        dirty = case when s.dirty > excluded.summary_v then s.dirty else '' end
      where excluded.summary_v > s.summary_v`;
  }

  /** Edits and cuts of covered messages made after a thread's summary mark it for a rerun (dirty: the newest such change's id). */
  #markSummaries(tx: Sql | Tx, changes: Change[]): PendingQuery<Row[]> {
    const col = <T>(pick: (c: Change) => T) => changes.map(pick);
    const t = this.#t;
    return tx`
      update ${tx(t.summaries)} s set dirty = m.id
      from (
        select s2.user_id, s2.thread, max(x.id) as id
        from unnest(${col((c) => c.user)}::text[], ${col((c) => c.thread)}::text[], ${col((c) => c.id)}::text[], ${col((c) => c.lowest)}::text[])
          as x(user_id, thread, id, lowest)
        join ${tx(t.summaries)} s2 on s2.user_id = x.user_id and s2.thread = x.thread
        where s2.text is not null and x.id > s2.summary_v collate "C" and x.lowest <= s2.covers collate "C"
        group by s2.user_id, s2.thread
      ) m
      where s.user_id = m.user_id and s.thread = m.thread and m.id > s.dirty collate "C"`;
  }

  /** Clear and drop floors (highest wins) and titles (last writer by op id; one older than the user's erasure lost to it). */
  #upsertThreads(tx: Sql | Tx, threads: ThreadPatch[]): PendingQuery<Row[]> {
    const col = <T>(pick: (p: ThreadPatch) => T) => threads.map(pick);
    return tx`
      insert into ${tx(this.#t.threads)} as h (user_id, thread, floor, title, title_v, title_at, created_at, updated_at)
      select x.user_id, x.thread, x.floor, case when x.title_v > greatest(u.history_floor, x.user_floor) then x.title end,
        case when x.title_v > greatest(u.history_floor, x.user_floor) then x.title_v end, x.at, x.at, x.at
      from unnest(
        ${col((p) => p.user)}::text[], ${col((p) => p.thread)}::text[], ${col((p) => p.floor)}::text[],
        ${col((p) => p.title.value)}::text[], ${col((p) => p.title.id || null)}::text[],
        ${col((p) => (p.title.value === null ? null : new Date(idTime(p.title.id)).toISOString()))}::timestamptz[], ${col((p) => p.userFloor)}::text[]
      ) as x(user_id, thread, floor, title, title_v, at, user_floor)
      left join ${tx(this.#t.users)} u on u.user_id = x.user_id
      on conflict (user_id, thread) do update set
        floor = greatest(h.floor, excluded.floor),
        title = case when excluded.title_v > coalesce(h.title_v, '') then excluded.title else h.title end,
        title_v = greatest(h.title_v, excluded.title_v),
        title_at = case when excluded.title_v > coalesce(h.title_v, '') then excluded.title_at else h.title_at end,
        created_at = case when excluded.title_v > coalesce(h.title_v, '') and excluded.title is not null and (h.messages = 0 or h.created_at is null)
          then excluded.created_at else h.created_at end,
        updated_at = case when excluded.title_v > coalesce(h.title_v, '') and excluded.title is not null
          then (case when h.messages = 0 then excluded.updated_at else greatest(h.updated_at, excluded.updated_at) end) else h.updated_at end`;
  }

  /** The newest edit of each message, applied where it is newer than the last one applied; a person's edit moves its thread's activity. */
  #edit(tx: Sql | Tx, edits: EditOp[]): PendingQuery<Row[]> {
    if (edits.length === 1) return this.#editOne(tx, edits[0] as EditOp);
    const col = <T>(pick: (op: EditOp) => T) => edits.map(pick);
    const t = this.#t;
    return tx`
      with x as (
        select * from unnest(
          ${col((op) => op.user)}::text[], ${col((op) => op.target)}::text[], ${col((op) => op.id)}::text[], ${col((op) => op.content)}::text[],
          ${col((op) => (op.meta === undefined ? null : JSON.stringify(op.meta)))}::text[], ${col((op) => op.status ?? null)}::text[],
          ${col((op) => (op.updatedAt === undefined ? null : new Date(op.updatedAt).toISOString()))}::timestamptz[],
          ${col((op) => (op.tokens === undefined ? null : String(op.tokens)))}::text[], ${col((op) => op.thread)}::text[]
        ) as x(user_id, target, id, content, meta, status, updated_at, tokens, thread)
      ), edited as (
        update ${tx(t.messages)} m set content = x.content, meta = x.meta::jsonb, status = x.status, tokens = x.tokens::integer,
          updated_at = coalesce(x.updated_at, m.updated_at), edit_v = x.id
        from x
        where m.user_id = x.user_id and m.id = x.target and coalesce(m.edit_v, '') < x.id collate "C"
        returning m.user_id, m.thread, x.updated_at
      ), marked as (
        update ${tx(t.summaries)} s set dirty = d.id
        from (
          select s2.user_id, s2.thread, max(x.id) as id from x
          join ${tx(t.summaries)} s2 on s2.user_id = x.user_id and s2.thread = x.thread
          where s2.text is not null and x.id > s2.summary_v collate "C" and x.target <= s2.covers collate "C"
          group by s2.user_id, s2.thread
        ) d
        where s.user_id = d.user_id and s.thread = d.thread and d.id > s.dirty collate "C"
      )
      update ${tx(t.threads)} h set updated_at = greatest(h.updated_at, e.at)
      from (select user_id, thread, max(updated_at) as at from edited where updated_at is not null group by user_id, thread) e
      where h.user_id = e.user_id and h.thread = e.thread`;
  }

  /**
   * One cut (deleteMessage, truncateAfter), as {@link #steps} writes it with no arrays to unnest:
   * the range kept as a tombstone, its messages deleted (the trigger uncounts them), and a summary
   * covering part of it marked for a rerun.
   */
  #cutOne(op: CutOp): PendingQuery<Row[]> {
    const t = this.#t;
    const sql = this.#sql;
    // delete_range deletes after the user's lock (migration 9), so one statement does it all.
    return sql`
      with recorded as (
        insert into ${sql(t.cuts)} (user_id, thread, from_id, to_id) values (${op.user}, ${op.thread}, ${op.from}, ${op.to})
        on conflict do nothing
      ), marked as (
        update ${sql(t.summaries)} s set dirty = ${op.id}
        where s.user_id = ${op.user} and s.thread = ${op.thread} and s.text is not null and ${op.id} > s.summary_v collate "C"
          and ${op.from} <= s.covers collate "C" and ${op.id} > s.dirty collate "C"
      )
      select ${sql(t.deleteRange)}(${op.user}, ${op.thread}, ${op.from}, ${op.to})`;
  }

  /** {@link #edit} of one message (updateMessage, a draft's flush or finish): the same rules, with no arrays to unnest. */
  #editOne(tx: Sql | Tx, op: EditOp): PendingQuery<Row[]> {
    const t = this.#t;
    const meta = op.meta === undefined ? null : tx.json(op.meta);
    const at = op.updatedAt === undefined ? null : new Date(op.updatedAt);
    const edited = tx`
      update ${tx(t.messages)} m set content = ${op.content}, meta = ${meta}::jsonb, status = ${op.status ?? null}::text,
        tokens = ${op.tokens ?? null}::integer, updated_at = coalesce(${at}::timestamptz, m.updated_at), edit_v = ${op.id}
      where m.user_id = ${op.user} and m.id = ${op.target} and coalesce(m.edit_v, '') < ${op.id} collate "C"
      returning m.thread`;
    const marked = tx`
      update ${tx(t.summaries)} s set dirty = ${op.id}
      where s.user_id = ${op.user} and s.thread = ${op.thread} and s.text is not null and ${op.id} > s.summary_v collate "C"
        and ${op.target} <= s.covers collate "C" and ${op.id} > s.dirty collate "C"`;
    if (at === null) return tx`with edited as (${edited}), marked as (${marked}) select 1`;
    return tx`
      with edited as (${edited}), marked as (${marked})
      update ${tx(t.threads)} h set updated_at = greatest(h.updated_at, ${at}::timestamptz)
      from edited e where h.user_id = ${op.user} and h.thread = e.thread`;
  }

  #upsertUsers(tx: Sql | Tx, patches: Map<string, Patch>): PendingQuery<Row[]> {
    const col = <T>(pick: (p: Patch) => T) => [...patches.values()].map(pick);
    return tx`
      insert into ${tx(this.#t.users)} as u (user_id, phone, phone_v, booking, booking_v, subscribed, subscribed_v, history_floor)
      select t.user_id, t.phone, t.phone_v, t.booking::jsonb, t.booking_v, coalesce(t.subscribed::bool, false), t.subscribed_v, t.history_floor
      from unnest(
        ${[...patches.keys()]}::text[], ${col((p) => p.phone.value)}::text[], ${col((p) => p.phone.id || null)}::text[],
        ${col((p) => (p.booking.value === null ? null : JSON.stringify(p.booking.value)))}::text[], ${col((p) => p.booking.id || null)}::text[],
        ${col((p) => (p.subscribed.id ? String(p.subscribed.value) : null))}::text[], ${col((p) => p.subscribed.id || null)}::text[],
        ${col((p) => p.floor)}::text[]
      ) as t(user_id, phone, phone_v, booking, booking_v, subscribed, subscribed_v, history_floor)
      on conflict (user_id) do update set
        phone = case when excluded.phone_v > coalesce(u.phone_v, '') then excluded.phone else u.phone end,
        phone_v = greatest(u.phone_v, excluded.phone_v),
        booking = case when excluded.booking_v > coalesce(u.booking_v, '') then excluded.booking else u.booking end,
        booking_v = greatest(u.booking_v, excluded.booking_v),
        subscribed = case when excluded.subscribed_v > coalesce(u.subscribed_v, '') then excluded.subscribed else u.subscribed end,
        subscribed_v = greatest(u.subscribed_v, excluded.subscribed_v),
        history_floor = greatest(u.history_floor, excluded.history_floor),
        updated_at = now()`;
  }

  /** Many messages, one statement; each refused like in {@link #insertOne}. */
  #insertMany(tx: Sql | Tx, appends: AppendOp[]): PendingQuery<Row[]> {
    const col = (pick: (op: AppendOp) => string | null) => textArray(appends, pick);
    const t = this.#t;
    const [users, ids, threads] = [col((op) => op.user), col((op) => op.id), col((op) => op.thread)];
    // appendable gets the arrays as they were sent (aggregating them back out of x, three ordered
    // array_aggs, was about a fifth of the statement's time); its positions are x's ordinality.
    return tx`
      with x as (
        select * from unnest(
          ${users}::text[], ${ids}::text[], ${threads}::text[], ${col((op) => op.role)}::text[],
          ${col((op) => op.content)}::text[], ${col((op) => (op.meta === undefined ? null : JSON.stringify(op.meta)))}::text[],
          ${col((op) => String(op.createdAt))}::text[], ${col((op) => op.key ?? null)}::text[], ${col((op) => op.status ?? null)}::text[],
          ${col((op) => op.v ?? null)}::text[], ${col((op) => (op.updatedAt === undefined ? null : String(op.updatedAt)))}::text[],
          ${col((op) => (op.tokens === undefined ? null : String(op.tokens)))}::text[]
        ) with ordinality as x(user_id, id, thread, role, content, meta, created_at, idempotency_key, status, edit_v, updated_at, tokens, n)
      ), stored as (
        select ${tx(t.appendable)}(${users}::text[], ${threads}::text[], ${ids}::text[]) as n
      ), inserted as (
      insert into ${tx(t.messages)} (user_id, id, thread, role, content, meta, created_at, idempotency_key, status, edit_v, updated_at, tokens)
      select x.user_id, x.id, x.thread, x.role, x.content, x.meta::jsonb, to_timestamp(x.created_at::float8 / 1000), x.idempotency_key,
        x.status, x.edit_v, to_timestamp(x.updated_at::float8 / 1000), x.tokens::integer
      from x where x.n in (select n from stored)
      -- One order for every syncer, so two batches of the same users lock rows in the same order.
      order by x.user_id, x.id
      on conflict do nothing
      returning user_id, thread, id, created_at, updated_at
    )
    insert into ${tx(t.threads)} as h (user_id, thread, messages, created_at, updated_at, last_id)
    select user_id, thread, count(*), min(created_at), max(greatest(created_at, updated_at)), max(id) from inserted
    group by user_id, thread order by user_id, thread
    ${this.#countInto(tx)}`;
  }

  // postgres.js's query.cancel() drops the promise of its cancel request, which then rejects
  // unhandled when the server is unreachable; an abandoned query's pool is replaced instead.
  #q<T extends readonly Row[]>(query: PendingQuery<T>): Promise<RowList<T>> {
    return withDeadline(this.name, this.timeoutMs, query.execute());
  }
}

/** One user's changes in a batch: the fold of its ops (appends aside), last writer wins by op id. */
type Patch = Pick<UserState, 'phone' | 'booking' | 'subscribed' | 'floor'>;

/** One thread's changes in a batch: its floor ('' none) and title (id '' when not written). */
interface ThreadPatch {
  user: string;
  thread: string;
  floor: string;
  title: { value: string | null; id: string };
  /** The user's erasure floor in this batch ('' none): a title at or below it lost to the erasure. */
  userFloor: string;
}

interface Batch {
  appends: AppendOp[];
  users: Map<string, Patch>;
  threads: ThreadPatch[];
  cuts: { user: string; thread: string; from: string; to: string }[];
  /** The newest edit of each message. */
  edits: EditOp[];
  /** The newest summary of each thread. */
  summaries: SummaryOp[];
  /** Every edit and cut (`lowest`: the lowest id it changes), for marking summaries. */
  changes: Change[];
}

interface Change {
  user: string;
  thread: string;
  id: string;
  lowest: string;
  cut: boolean;
}

/** A statement of a batch, for the pool (one statement) or a transaction's connection. */
type Step = (tx: Sql | Tx) => PendingQuery<Row[]>;

/**
 * Adds one step running the parts present as one statement: data-modifying CTEs, each changing
 * its own table (or its own rows), all seeing the state before the statement.
 */
function pushCombined(steps: Step[], parts: (Step | false)[]): void {
  const present = parts.filter((part): part is Step => part !== false);
  if (present.length <= 1) {
    steps.push(...present);
    return;
  }
  steps.push((tx) => {
    const [first, ...rest] = present.map((part) => part(tx));
    let ctes = tx`c0 as (${first as PendingQuery<Row[]>})`;
    rest.forEach((part, i) => {
      ctes = tx`${ctes}, ${tx(`c${i + 1}`)} as (${part})`;
    });
    return tx`with ${ctes} select 1`;
  });
}

/** Splits a batch into messages (the first per idempotency key), edits, and the fold of the other ops per user and thread. */
function foldBatch(ops: readonly Op[]): Batch {
  const appends: AppendOp[] = [];
  const states = new Map<string, UserState>();
  const keys = new Map<string, AppendOp>();
  const edits = new Map<string, { newest?: EditOp; stamped?: EditOp }>();
  const summaries = new Map<string, SummaryOp>();
  const changes: Change[] = [];
  for (const op of ops) {
    if (op.kind === 'summary') {
      const key = `${op.user}\n${op.thread}`;
      const seen = summaries.get(key);
      if (!seen || seen.id < op.id) summaries.set(key, op);
      continue;
    }
    if (op.kind === 'cut') changes.push({ user: op.user, thread: op.thread, id: op.id, lowest: op.from, cut: true });
    if (op.kind === 'append') {
      // One message per idempotency key: the earliest (an INSERT of several rows keeps no order).
      const key = op.key === undefined ? undefined : `${op.user}\n${op.key}`;
      const first = key === undefined ? undefined : keys.get(key);
      if (first && first.id < op.id) continue;
      if (key !== undefined) keys.set(key, op);
      if (first) appends.splice(appends.indexOf(first), 1);
      appends.push(op);
      continue;
    }
    if (op.kind === 'edit') {
      const key = `${op.user}\n${op.target}`;
      const seen = edits.get(key) ?? {};
      if (!seen.newest || seen.newest.id < op.id) seen.newest = op;
      if (op.updatedAt !== undefined && (!seen.stamped || seen.stamped.id < op.id)) seen.stamped = op;
      edits.set(key, seen);
      continue;
    }
    const state = states.get(op.user) ?? emptyUserState();
    states.set(op.user, state);
    applyOp(state, op);
  }
  const users = new Map<string, Patch>();
  const threads: ThreadPatch[] = [];
  const cuts: Batch['cuts'] = [];
  for (const [user, state] of states) {
    users.set(user, state);
    for (const [thread, t] of state.threads) {
      if (t.floor !== '' || t.title.id !== '') threads.push({ user, thread, floor: t.floor, title: t.title, userFloor: state.floor });
      for (const [from, to] of t.cuts) cuts.push({ user, thread, from, to });
    }
  }
  // The newest edit wins; like edits applied one by one, it keeps the updatedAt of the newest edit
  // that set one (a draft's flush after a person's edit leaves the message edited).
  const newest = [...edits.values()].map(({ newest, stamped }) =>
    newest && newest.updatedAt === undefined && stamped ? { ...newest, updatedAt: stamped.updatedAt as number } : (newest as EditOp),
  );
  return { appends, users, threads, cuts, edits: newest, summaries: [...summaries.values()], changes };
}

const ARRAY_QUOTED = /[\\"]/g;

/**
 * A text[] literal of one column of `rows` (bound as text and cast by the statement): what
 * postgres.js would send for a JavaScript array, made in one pass (a sync writes 60,000 of these
 * values per batch, and its escaping runs two replaces on every one).
 */
function textArray<T>(rows: readonly T[], pick: (row: T) => string | null): string {
  let out = '{';
  for (let i = 0; i < rows.length; i++) {
    const value = pick(rows[i] as T);
    if (i > 0) out += ',';
    out += value === null ? 'NULL' : `"${value.includes('"') || value.includes('\\') ? value.replace(ARRAY_QUOTED, '\\$&') : value}"`;
  }
  return `${out}}`;
}

function toMessage(row: Row): Message {
  const message: Message = {
    id: row.id as string,
    role: row.role as Role,
    content: row.content as string,
    createdAt: row.created_at as Date,
    thread: row.thread as string,
    // A row without a count (written before migration 6 ran, by a DBA) counts by the default formula.
    tokens: row.tokens === null || row.tokens === undefined ? defaultTokens(row as { content: string }) : (row.tokens as number),
  };
  if (row.meta !== null) message.meta = row.meta as JsonObject;
  if (row.status !== null) message.status = row.status as MessageStatus;
  if (row.updated_at !== null) message.updatedAt = row.updated_at as Date;
  return message;
}

function encodeCursor(at: string, thread: string): string {
  return Buffer.from(JSON.stringify([at, thread])).toString('base64url');
}

/** A cursor this adapter made, or undefined (the first page) for null or anything else. */
function decodeCursor(cursor: string | null): [string, string] | undefined {
  if (cursor === null) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString());
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string') return [value[0], value[1]];
  } catch {}
  return undefined;
}

function checkSchema(schema: string): string {
  if (/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) return schema;
  throw new ConfigurationError(
    ErrorCode.INVALID_OPTION,
    `PostgresAdapter: schema must be a lowercase identifier of 1-63 characters [a-z0-9_], got ${JSON.stringify(schema)}`,
  );
}

function dataKeyOf(row: Row): DataKeyRecord {
  const record: DataKeyRecord = { id: row.key_id as string, master: row.master_id as string, wrapped: row.wrapped as string };
  if (row.destroyed_by !== null && row.destroyed_by !== undefined) record.destroyed = row.destroyed_by as string;
  return record;
}
