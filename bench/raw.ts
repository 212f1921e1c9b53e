import type { Redis } from 'ioredis';
import type { Sql } from 'postgres';
import type { Message } from '../src/index.js';

/*
 * The baselines: the raw clients doing the least work each operation needs, on tables of the
 * same kind as the store's (same columns, collation and primary key) and lists of the same items.
 */

/** A typical chat message (about 120 characters). */
export const CONTENT = 'Hi! Could you book me a haircut for tomorrow at 10:00? If that slot is taken, anything before noon works. Thanks!';
/** The store's default history TTL. */
export const TTL_MS = 3_600_000;

const ID_PREFIX = Date.now().toString(32).padStart(10, '0');
let seq = 0;

/** A unique, increasing 26-character id (the store's ids have the same length and order by time). */
export function rawId(): string {
  return ID_PREFIX + String(++seq).padStart(16, '0');
}

/** A list item of the same shape as the store's: {"id","role","content","createdAt"}. */
export function item(id: string, role: string, content: string, createdAt: number): string {
  return JSON.stringify({ id, role, content, createdAt });
}

export function itemOf(message: Message): string {
  return item(message.id, message.role, message.content, message.createdAt.getTime());
}

/** The store's messages and users tables, reproduced for the raw baselines. */
export async function createTables(sql: Sql, schema: string): Promise<void> {
  await sql`create schema if not exists ${sql(schema)}`;
  for (const table of ['messages', 'rowbyrow']) {
    await sql`create table ${sql(`${schema}.${table}`)} (
      user_id text collate "C" not null, id text collate "C" not null,
      role text not null check (role in ('system', 'user', 'assistant', 'tool')),
      content text not null, meta jsonb, created_at timestamptz not null,
      primary key (user_id, id))`;
  }
  await sql`create table ${sql(`${schema}.users`)} (
    user_id text collate "C" primary key, phone text, phone_v text collate "C", booking jsonb, booking_v text collate "C",
    subscribed boolean not null default false, subscribed_v text collate "C",
    history_floor text collate "C" not null default '', updated_at timestamptz not null default now())`;
}

/** `perUser` messages for each user, straight into a messages table (the durable state after Redis expired). */
export async function seedMessages(sql: Sql, table: string, users: readonly string[], perUser: number): Promise<void> {
  for (let i = 0; i < users.length; i += 1000) {
    await sql`
      insert into ${sql(table)} (user_id, id, role, content, meta, created_at)
      select u, lpad(g::text, 26, '0'), case when g % 2 = 0 then 'assistant' else 'user' end, ${CONTENT}, null,
             now() - make_interval(secs => ${perUser} - g)
      from unnest(${users.slice(i, i + 1000) as string[]}::text[]) u, generate_series(1, ${perUser}::int) g`;
  }
}

export class Raw {
  constructor(
    readonly redis: Redis,
    readonly sql: Sql,
    readonly schema: string,
  ) {}

  /** ioredis MULTI RPUSH + LTRIM + PEXPIRE: one round trip. */
  async append(key: string, limit: number, id = rawId()): Promise<void> {
    await this.redis
      .multi()
      .rpush(key, item(id, 'user', CONTENT, Date.now()))
      .ltrim(key, -limit, -1)
      .pexpire(key, TTL_MS)
      .exec();
  }

  /** postgres.js INSERT of one message (a prepared statement, autocommit). */
  async insert(user: string, id = rawId(), table = 'messages'): Promise<void> {
    const sql = this.sql;
    await sql`insert into ${sql(`${this.schema}.${table}`)} (user_id, id, role, content, meta, created_at)
      values (${user}, ${id}, 'user', ${CONTENT}, null, ${new Date()})`;
  }

  /** The MULTI and the INSERT in parallel: as slow as the slower of the two. */
  async appendBoth(key: string, user: string, limit: number): Promise<void> {
    const id = rawId();
    await Promise.all([this.append(key, limit, id), this.insert(user, id)]);
  }

  /** LRANGE key -n -1 and JSON.parse of each item. */
  async read(key: string, n: number): Promise<unknown[]> {
    return (await this.redis.lrange(key, -n, -1)).map((s) => JSON.parse(s) as unknown);
  }

  /** SELECT ... WHERE user_id = $1 ORDER BY id DESC LIMIT n, oldest first. */
  async select(user: string, n: number): Promise<unknown[]> {
    const sql = this.sql;
    const rows = await sql`select id, role, content, meta, created_at from ${sql(`${this.schema}.messages`)}
      where user_id = ${user} order by id desc limit ${n}`;
    return rows.reverse();
  }

  /** A cache-aside miss done by hand: LRANGE (empty), the SELECT, then the rows pushed to Redis without waiting. */
  async missAndFill(key: string, user: string, n: number): Promise<unknown[]> {
    await this.redis.lrange(key, -n, -1);
    const rows = (await this.select(user, n)) as { id: string; role: string; content: string; created_at: Date }[];
    const items = rows.map((r) => item(r.id, r.role, r.content, r.created_at.getTime()));
    this.redis
      .multi()
      .rpush(key, ...items)
      .pexpire(key, TTL_MS)
      .exec()
      .catch(() => {});
    return rows;
  }

  /** MULTI HSET + PEXPIRE in parallel with one upsert. */
  async setPhone(key: string, user: string, phone: string): Promise<void> {
    const sql = this.sql;
    const id = rawId();
    await Promise.all([
      this.redis.multi().hset(key, 'p', phone).pexpire(key, TTL_MS).exec(),
      sql`insert into ${sql(`${this.schema}.users`)} (user_id, phone, phone_v) values (${user}, ${phone}, ${id})
        on conflict (user_id) do update set phone = excluded.phone, phone_v = excluded.phone_v`,
    ]);
  }

  async members(key: string): Promise<string[]> {
    return this.redis.smembers(key);
  }

  /** A raw list holding exactly these messages, as the store's items. */
  async copyList(key: string, messages: readonly Message[]): Promise<void> {
    await this.redis
      .multi()
      .del(key)
      .rpush(key, ...messages.map(itemOf))
      .pexpire(key, TTL_MS)
      .exec();
  }
}
