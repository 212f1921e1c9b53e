import type { Options, PendingQuery, Row, RowList, Sql, TransactionSql } from 'postgres';
import type { AdapterConfig, DeadLetterRecord, HistoryRead, ReadOptions, RetentionRule, StorageAdapter, UserRecord, WriteOutcome } from './contract.js';
import { withDeadline } from '../routing/deadline.js';
import { adapterInUse, ConfigurationError, ErrorCode, TierError } from '../errors.js';
import { loadPeer } from '../load.js';
import { maskUrl } from '../logger.js';
import { applyOp, emptyUserState, type AppendOp, type Op, type UserState } from '../model/ops.js';
import { positive } from '../options.js';
import { checkUrl } from '../model/validate.js';
import type { JsonObject, Message, Role } from '../types.js';
import { migrations, migrationText } from './postgres-migrations.js';

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
  readonly #t: { messages: string; users: string };
  #migrated: Promise<void> | undefined;
  #bound = false;
  #closed = false;

  constructor(options: PostgresAdapterOptions = {}) {
    this.schema = checkSchema(options.schema ?? 'tcs');
    this.timeoutMs = positive(options.timeoutMs, 'PostgresAdapter: timeoutMs', 2000);
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 'PostgresAdapter: connectTimeoutMs', 2000);
    this.#t = { messages: `${this.schema}.messages`, users: `${this.schema}.users` };
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
    const only = ops.length === 1 ? ops[0] : undefined;
    if (only?.kind === 'append') return [await this.#appendOne(only)];
    if (ops.length === 0) return undefined;
    const { appends, patches } = foldBatch(ops);
    const floors = [...patches.values()].some((patch) => patch.floor !== '');
    // One statement is atomic by itself: a transaction (three round trips) only when a batch needs several.
    if (patches.size === 0) await this.#q(this.#insertMany(this.#sql, appends));
    else if (appends.length === 0 && !floors) await this.#q(this.#upsertUsers(this.#sql, patches));
    else
      await withDeadline(
        this.name,
        this.timeoutMs * 5,
        this.#sql.begin((tx) => this.#writeBatch(tx, appends, patches)),
      );
    return undefined;
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

  async readHistory(user: string, limit: number, options?: ReadOptions): Promise<HistoryRead> {
    const sql = this.#reader(options);
    const rows = await this.#q(sql`
      select f.floor, m.id, m.role, m.content, m.meta, m.created_at
      from (select coalesce((select history_floor from ${sql(this.#t.users)} where user_id = ${user}), '') as floor) f
      left join lateral (
        select id, role, content, meta, created_at from ${sql(this.#t.messages)}
        where user_id = ${user} and id > f.floor collate "C"
        order by id desc limit ${limit}
      ) m on true`);
    const messages: Message[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      const row = rows[i] as Row;
      if (row.id !== null) messages.push(toMessage(row));
    }
    return { messages, floor: (rows[0]?.floor as string | undefined) ?? '' };
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
   * Deletes, in batches of `batch`, messages beyond the newest `keepLast` of each of `users` and
   * messages created before `before`. Returns how many went.
   */
  async enforceRetention(rule: RetentionRule): Promise<number> {
    const sql = this.#sql;
    const messages = sql(this.#t.messages);
    let deleted = 0;
    for (let i = 0; rule.keepLast !== undefined && i < rule.users.length; i += rule.batch) {
      const users = rule.users.slice(i, i + rule.batch);
      const result = await this.#q(sql`
        delete from ${messages} m using (
          select u.user_id, (select id from ${messages} x where x.user_id = u.user_id order by x.id desc offset ${rule.keepLast} limit 1) as cutoff
          from unnest(${users as string[]}::text[]) as u(user_id)
        ) c
        where m.user_id = c.user_id and m.id <= c.cutoff`);
      deleted += result.count;
    }
    for (let count = rule.batch; rule.before !== undefined && count === rule.batch; deleted += count) {
      const result = await this.#q(sql`
        with doomed as (select user_id, id from ${messages} where created_at < ${rule.before} order by created_at limit ${rule.batch})
        delete from ${messages} m using doomed d where m.user_id = d.user_id and m.id = d.id`);
      count = result.count;
    }
    return deleted;
  }

  /** Keeps a write PostgreSQL refused for good in `dead_letters`, as JSON text (which any row can hold). */
  async recordDeadLetter(letter: DeadLetterRecord): Promise<void> {
    const sql = this.#sql;
    await this.#q(sql`
      insert into ${sql(`${this.schema}.dead_letters`)} (user_id, op_id, kind, entry, error)
      values (${letter.user}, ${letter.id}, ${letter.kind}, ${letter.entry}, ${letter.error})`);
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

  #insertOne(sql: Sql, op: AppendOp): PendingQuery<Row[]> {
    const meta = op.meta === undefined ? null : sql.json(op.meta);
    return sql`
      insert into ${sql(this.#t.messages)} (user_id, id, role, content, meta, created_at, idempotency_key)
      select ${op.user}, ${op.id}, ${op.role}, ${op.content}, ${meta}::jsonb, ${new Date(op.createdAt)}, ${op.key ?? null}::text
      where ${op.id} > coalesce((select history_floor from ${sql(this.#t.users)} where user_id = ${op.user}), '') collate "C"
      on conflict do nothing
      returning id`;
  }

  async #writeBatch(tx: Tx, appends: AppendOp[], patches: Map<string, Patch>): Promise<void> {
    if (patches.size > 0) await this.#upsertUsers(tx, patches);
    if (appends.length > 0) await this.#insertMany(tx, appends);
    const floors = [...patches].filter(([, p]) => p.floor !== '');
    if (floors.length > 0) {
      await tx`
        delete from ${tx(this.#t.messages)} m
        using unnest(${floors.map(([u]) => u)}::text[], ${floors.map(([, p]) => p.floor)}::text[]) as f(u, floor)
        where m.user_id = f.u and m.id <= f.floor collate "C"`;
    }
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

  #insertMany(tx: Sql | Tx, appends: AppendOp[]): PendingQuery<Row[]> {
    const col = <T>(pick: (op: AppendOp) => T) => appends.map(pick);
    return tx`
      insert into ${tx(this.#t.messages)} (user_id, id, role, content, meta, created_at, idempotency_key)
      select t.user_id, t.id, t.role, t.content, t.meta::jsonb, to_timestamp(t.created_at::float8 / 1000), t.idempotency_key
      from unnest(
        ${col((op) => op.user)}::text[], ${col((op) => op.id)}::text[], ${col((op) => op.role)}::text[],
        ${col((op) => op.content)}::text[], ${col((op) => (op.meta === undefined ? null : JSON.stringify(op.meta)))}::text[],
        ${col((op) => String(op.createdAt))}::text[], ${col((op) => op.key ?? null)}::text[]
      ) as t(user_id, id, role, content, meta, created_at, idempotency_key)
      left join ${tx(this.#t.users)} f on f.user_id = t.user_id
      where t.id > coalesce(f.history_floor, '') collate "C"
      on conflict do nothing`;
  }

  // postgres.js's query.cancel() drops the promise of its cancel request, which then rejects
  // unhandled when the server is unreachable; an abandoned query's pool is replaced instead.
  #q<T extends readonly Row[]>(query: PendingQuery<T>): Promise<RowList<T>> {
    return withDeadline(this.name, this.timeoutMs, query.execute());
  }
}

/** One user's changes in a batch: the fold of its ops (appends aside), last writer wins by op id. */
type Patch = Pick<UserState, 'phone' | 'booking' | 'subscribed' | 'floor'>;

/** Splits a batch into messages (the first per idempotency key) and one patch per user (a field with id '' was not written). */
function foldBatch(ops: readonly Op[]): { appends: AppendOp[]; patches: Map<string, Patch> } {
  const appends: AppendOp[] = [];
  const patches = new Map<string, UserState>();
  const keys = new Map<string, AppendOp>();
  for (const op of ops) {
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
    const state = patches.get(op.user) ?? emptyUserState();
    patches.set(op.user, state);
    applyOp(state, op);
  }
  return { appends, patches };
}

function toMessage(row: Row): Message {
  const message: Message = { id: row.id as string, role: row.role as Role, content: row.content as string, createdAt: row.created_at as Date };
  if (row.meta !== null) message.meta = row.meta as JsonObject;
  return message;
}

function checkSchema(schema: string): string {
  if (/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) return schema;
  throw new ConfigurationError(
    ErrorCode.INVALID_OPTION,
    `PostgresAdapter: schema must be a lowercase identifier of 1-63 characters [a-z0-9_], got ${JSON.stringify(schema)}`,
  );
}
