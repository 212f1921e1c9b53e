import { createHash } from 'node:crypto';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { AdapterConfig, CacheMiss, HistoryRead, StorageAdapter, UserRecord } from '../adapter.js';
import { decodeMessage, decodeOp, encodeMessage, encodeOp } from '../codec.js';
import { withDeadline } from '../deadline.js';
import { ConfigurationError, ErrorCode, TierError } from '../errors.js';
import { loadPeer } from '../load.js';
import { maskUrl } from '../logger.js';
import { fromMessage, type Op } from '../ops.js';
import { positive } from '../options.js';
import type { JsonObject, Message } from '../types.js';
import * as lua from './redis-scripts.js';

export interface RedisAdapterOptions {
  /** `redis://` or `rediss://` (TLS) URL. @default 'redis://127.0.0.1:6379' when no client is given */
  url?: string;
  /** A ready ioredis client; the store uses it as it is and never closes it. */
  client?: Redis | Cluster;
  /** Start of every key; one user's keys share a Cluster slot through a `{user}` hash tag. @default 'tcs' */
  keyPrefix?: string;
  /** Deadline of every command, in milliseconds. @default 500 */
  timeoutMs?: number;
  /** Deadline of opening a connection, in milliseconds. @default 1000 */
  connectTimeoutMs?: number;
  /** Extra ioredis options for the client the adapter opens (ignored with `client`). */
  redisOptions?: RedisOptions;
}

type IoRedis = typeof import('ioredis');
type Script = { lua: string; sha: string };
type Reply = unknown[];

const script = (source: string): Script => ({ lua: source, sha: createHash('sha1').update(source).digest('hex') });
const S = {
  write: script(lua.WRITE),
  readHistory: script(lua.READ_HISTORY),
  readHistoryDurable: script(lua.READ_HISTORY_DURABLE),
  readUser: script(lua.READ_USER),
  readSubscribers: script(lua.READ_SUBSCRIBERS),
  fillHistory: script(lua.FILL_HISTORY),
  fillUser: script(lua.FILL_USER),
  fillSubscribers: script(lua.FILL_SUBSCRIBERS),
  ack: script(lua.ACK),
  releaseLock: script(lua.RELEASE_LOCK),
};

const UNREACHABLE = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|Connection is closed|Stream isn't writeable|Socket timeout|Command timed out|connect ETIMEDOUT|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|Failed to refresh slots cache|None of startup nodes is available/;

/** The Redis tier: hot copies with TTLs and the pending journal (or, with no PostgreSQL, the system of record). */
export class RedisAdapter implements StorageAdapter {
  readonly name = 'redis';
  readonly keyPrefix: string;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly client: Redis | Cluster;
  readonly #owned: boolean;
  readonly #url: string | undefined;
  #config: AdapterConfig | undefined;
  #closed = false;

  constructor(options: RedisAdapterOptions = {}) {
    this.keyPrefix = checkPrefix(options.keyPrefix ?? 'tcs');
    this.timeoutMs = positive(options.timeoutMs, 'RedisAdapter: timeoutMs', 500);
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 'RedisAdapter: connectTimeoutMs', 1000);
    if (options.client) {
      this.client = options.client;
      this.#owned = false;
      return;
    }
    this.#url = checkUrl(options.url ?? 'redis://127.0.0.1:6379');
    const Redis = loadPeer<IoRedis>('ioredis', 'RedisAdapter').default;
    const clientOptions: RedisOptions = {
      lazyConnect: true,
      // Fail fast rather than queue: a down tier is skipped, not waited for.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.timeoutMs,
      // A socket that stops answering is destroyed and replaced rather than talked into forever.
      socketTimeout: this.timeoutMs * 2,
      connectTimeout: this.connectTimeoutMs,
      keepAlive: 10_000,
      retryStrategy: (times: number) => Math.min(50 * 2 ** times, 1000),
      connectionName: 'tiered-conversation-store',
      ...options.redisOptions,
    };
    // ioredis 6's constructor types reject its own RedisOptions under exactOptionalPropertyTypes.
    this.client = new Redis(this.#url, clientOptions as never);
    this.client.on('error', () => {}); // failures surface through commands and the store's breaker
    this.#owned = true;
  }

  /** The connection target with any password masked, for logs. */
  describe(): string {
    return this.#url ? maskUrl(this.#url) : 'a client passed in';
  }

  /** Passwords the store must mask everywhere. */
  secrets(): string[] {
    return this.#url ? [this.#url] : [];
  }

  bind(config: AdapterConfig): void {
    if (this.#config) throw new Error('this RedisAdapter already belongs to a store');
    this.#config = config;
  }

  get #cfg(): AdapterConfig {
    if (!this.#config) throw new Error('RedisAdapter used before a store bound it');
    return this.#config;
  }

  get #durable(): boolean {
    return this.#cfg.role === 'durable';
  }

  async connect(): Promise<void> {
    const status = this.client.status;
    if (status === 'ready') return;
    if (status === 'wait' || status === 'end' || status === 'close') {
      await withDeadline(this.name, this.connectTimeoutMs, this.client.connect());
      return;
    }
    await withDeadline(this.name, this.connectTimeoutMs, new Promise<void>((resolve) => this.client.once('ready', resolve)));
  }

  async ping(): Promise<void> {
    await this.#call(this.client.ping());
  }

  /**
   * Writes ops; with `pending`, journals them in the same atomic step for the syncer to move.
   * Returns, per op, whether it changed a copy Redis holds (false: none was there to change).
   */
  async write(ops: readonly Op[], options: { pending?: boolean } = {}): Promise<boolean[]> {
    if (ops.length === 0) return [];
    const cfg = this.#cfg;
    const keys = [this.#k.subs, this.#k.subsVersion, this.#k.dirty, this.#k.pending];
    const ttl = this.#durable ? { history: 0, userData: 0, subscribers: 0 } : cfg.ttlMs;
    const args: (string | number)[] = [this.#durable ? 'd' : 'c', cfg.historyLimit, ttl.history, ttl.userData, ttl.subscribers];
    for (const op of ops) {
      keys.push(...this.#userKeys(op.user));
      const entry = options.pending ? (op.kind === 'append' ? '=' : encodeOp(op)) : '';
      args.push(op.kind, op.id, op.user, payload(op), entry);
    }
    const held = (await this.#eval(S.write, keys, args)) as number[];
    return held.map((flag) => flag === 1);
  }

  async readHistory(user: string, limit: number): Promise<HistoryRead | CacheMiss> {
    const [h, , m, j] = this.#userKeys(user);
    if (this.#durable) {
      const [floor, ...items] = (await this.#eval(S.readHistoryDurable, [h, m], [limit])) as string[];
      return { messages: items.map(decodeMessage), floor: floor ?? '' };
    }
    const reply = (await this.#eval(S.readHistory, [h, m, j], [limit])) as Reply;
    if (reply[0] === 0) return this.#miss(user, reply);
    return { messages: (reply as string[]).map(decodeMessage), floor: '' };
  }

  async readUser(user: string): Promise<UserRecord | CacheMiss> {
    const [, d, m, j] = this.#userKeys(user);
    if (this.#durable) {
      const [[phone, booking, phoneId, bookingId], subscribed] = await Promise.all([
        this.#call(this.client.hmget(d, 'p', 'b', 'pv', 'bv')),
        this.#call(this.client.sismember(this.#k.subs, user)),
      ]);
      return record(phone ?? null, booking ?? null, phoneId ?? '', bookingId ?? '', subscribed === 1);
    }
    const reply = (await this.#eval(S.readUser, [d, m, j], [])) as Reply;
    if (reply[0] === 0) return this.#miss(user, reply);
    return record((reply[1] as string | null) ?? null, (reply[2] as string | null) ?? null, '', '', false);
  }

  async readSubscribers(): Promise<string[] | CacheMiss> {
    const reply = (await this.#eval(S.readSubscribers, [this.#k.subs, this.#k.subsVersion], [''])) as Reply;
    if (reply[0] === 0) return this.#durable ? [] : { miss: true, version: String(reply[1]), pending: await this.#pendingSubscriptions() };
    return (reply[1] as string[]).filter((member) => member !== '');
  }

  async isSubscriber(user: string): Promise<boolean | CacheMiss> {
    const reply = (await this.#eval(S.readSubscribers, [this.#k.subs, this.#k.subsVersion], [user])) as Reply;
    if (reply[0] === 0) return this.#durable ? false : { miss: true, version: String(reply[1]), pending: await this.readPending(user) };
    return reply[1] === 1;
  }

  /** Installs a user's newest messages after a miss, unless something was written since the miss. */
  async fillHistory(user: string, version: string, messages: readonly Message[]): Promise<boolean> {
    if (messages.length === 0) return false;
    const [h, , m] = this.#userKeys(user);
    const items = messages.map((message) => encodeMessage(fromMessage(user, message)));
    return (await this.#eval(S.fillHistory, [h, m], [version, this.#cfg.ttlMs.history, ...items])) === 1;
  }

  async fillUser(user: string, version: string, value: UserRecord): Promise<boolean> {
    const [, d, m] = this.#userKeys(user);
    const fields: string[] = [];
    if (value.phone.value !== null) fields.push('p', value.phone.value, 'pv', value.phone.id);
    if (value.booking.value !== null) fields.push('b', JSON.stringify(value.booking.value), 'bv', value.booking.id);
    return (await this.#eval(S.fillUser, [d, m], [version, this.#cfg.ttlMs.userData, ...fields])) === 1;
  }

  async fillSubscribers(version: string, users: readonly string[]): Promise<boolean> {
    const keys = [this.#k.subs, this.#k.subsVersion];
    return (await this.#eval(S.fillSubscribers, keys, [version, this.#cfg.ttlMs.subscribers, ...users])) === 1;
  }

  /** Drops hot copies that missed writes (and stops fills in flight from installing old ones). */
  async invalidate(users: Iterable<string>, subscribers: boolean): Promise<void> {
    const pipeline = this.client.pipeline();
    for (const user of users) {
      const [h, d, m] = this.#userKeys(user);
      pipeline.del(h, d).hincrby(m, 'v', 1);
      if (this.#cfg.ttlMs.history > 0) pipeline.pexpire(m, Math.max(this.#cfg.ttlMs.history, this.#cfg.ttlMs.userData));
    }
    if (subscribers) pipeline.del(this.#k.subs).incr(this.#k.subsVersion);
    await this.#call(pipeline.exec().then(throwFirst));
  }

  /** Drops every hot copy under the key prefix (SCAN, never KEYS); journals stay. */
  async invalidateAll(): Promise<void> {
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.#call(node.scan(cursor, 'MATCH', `${this.keyPrefix}:{*}:[hdm]`, 'COUNT', 1000));
        cursor = next;
        // One DEL per key: in a Cluster the keys of one batch live in different slots.
        await Promise.all(keys.map((key) => this.#call(node.del(key))));
      } while (cursor !== '0');
    }
    await this.#call(this.client.del(this.#k.subs));
    await this.#call(this.client.incr(this.#k.subsVersion));
  }

  /** The pending journal of one user, oldest first. */
  async readPending(user: string): Promise<Op[]> {
    const j = this.#userKeys(user)[3];
    const entries = await this.#call(this.client.lrange(j, 0, -1));
    return entries.map((entry) => decodeOp(user, entry));
  }

  /** Up to `count` users with pending entries, picked at random so concurrent syncers spread out. */
  async dirtyUsers(count: number): Promise<string[]> {
    return this.#call(this.client.srandmember(this.#k.dirty, count));
  }

  /** The first `perUser` (0: all) journal entries of each user, as raw entries (acknowledged by `ack`). */
  async readJournals(users: readonly string[], perUser: number): Promise<Map<string, string[]>> {
    const pipeline = this.client.pipeline();
    for (const user of users) pipeline.lrange(this.#userKeys(user)[3], 0, perUser - 1);
    const replies = throwFirst(await this.#call(pipeline.exec())) as string[][];
    return new Map(users.map((user, i) => [user, replies[i] ?? []]));
  }

  decodeEntry(user: string, entry: string): Op {
    return decodeOp(user, entry);
  }

  /** Removes entries the durable tier now has; returns how many are left for that user. */
  async ack(user: string, entries: readonly string[]): Promise<number> {
    const keys = [this.#userKeys(user)[3], this.#k.dirty, this.#k.pending];
    return Number(await this.#eval(S.ack, keys, [user, ...entries]));
  }

  async pendingCount(): Promise<number> {
    return Math.max(0, Number(await this.#call(this.client.get(this.#k.pending))) || 0);
  }

  /** A lease that keeps concurrent background syncers from repeating each other's work. */
  async acquireLock(token: string, ttlMs: number): Promise<boolean> {
    return (await this.#call(this.client.set(this.#k.lock, token, 'PX', ttlMs, 'NX'))) === 'OK';
  }

  async releaseLock(token: string): Promise<void> {
    await this.#eval(S.releaseLock, [this.#k.lock], [token]);
  }

  /** Calls `listener` each time the client (re)connects, so a restart of Redis can be noticed. */
  onReady(listener: () => void): void {
    this.client.on('ready', listener);
  }

  /** The server's run id: it changes when Redis restarts (and may have lost what it held). */
  async runId(): Promise<string> {
    const info = await this.#call(this.client.info('server'));
    return /run_id:(\w+)/.exec(info)?.[1] ?? '';
  }

  isUnavailable(error: unknown): boolean {
    if (error instanceof TierError) return error.code === ErrorCode.TIER_TIMEOUT;
    if (!(error instanceof Error)) return false;
    return error.name === 'MaxRetriesPerRequestError' || error.name === 'ClusterAllFailedError' || UNREACHABLE.test(error.message);
  }

  async reset(): Promise<void> {
    if (this.#owned && !this.#closed) this.client.disconnect(true);
  }

  async close(): Promise<void> {
    if (this.#closed || !this.#owned) return;
    this.#closed = true;
    if (this.client.status === 'end') return;
    const ended = new Promise<void>((resolve) => this.client.once('end', () => resolve()));
    try {
      if (this.client.status === 'ready') await withDeadline(this.name, this.timeoutMs, this.client.quit());
    } catch {
      // unreachable or slow: drop the socket below
    }
    this.client.disconnect();
    await withDeadline(this.name, this.timeoutMs, ended).catch(() => {});
  }

  async #pendingSubscriptions(): Promise<Op[]> {
    const users = await this.#call(this.client.smembers(this.#k.dirty));
    if (users.length === 0) return [];
    const journals = await this.readJournals(users, 0);
    const ops: Op[] = [];
    for (const [user, entries] of journals) {
      for (const entry of entries) {
        const op = decodeOp(user, entry);
        if (op.kind === 'subscribe' || op.kind === 'delete') ops.push(op);
      }
    }
    return ops;
  }

  #miss(user: string, reply: Reply): CacheMiss {
    return { miss: true, version: String(reply[1]), pending: (reply.slice(2) as string[]).map((e) => decodeOp(user, e)) };
  }

  get #k() {
    const p = this.keyPrefix;
    return {
      subs: `${p}:{subs}:s`,
      subsVersion: `${p}:{subs}:v`,
      dirty: `${p}:{sync}:dirty`,
      pending: `${p}:{sync}:pending`,
      lock: `${p}:{sync}:lock`,
    };
  }

  /** history list, data hash, meta hash, journal: one hash tag, so one Cluster slot. */
  #userKeys(user: string): [string, string, string, string] {
    const base = `${this.keyPrefix}:{${user}}`;
    return [`${base}:h`, `${base}:d`, `${base}:m`, `${base}:j`];
  }

  async #eval(s: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await this.#call(this.client.evalsha(s.sha, keys.length, ...keys, ...args));
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.#call(this.client.eval(s.lua, keys.length, ...keys, ...args));
    }
  }

  // The adapter's own client times out by itself; a client passed in gets a deadline here.
  #call<T>(work: Promise<T>): Promise<T> {
    const options = (this.client.options as { redisOptions?: RedisOptions } & RedisOptions);
    if (this.#owned || (options.redisOptions ?? options).commandTimeout !== undefined) return work;
    return withDeadline(this.name, this.timeoutMs, work);
  }
}

function payload(op: Op): string {
  switch (op.kind) {
    case 'append':
      return encodeMessage(op);
    case 'phone':
      return op.phone ?? '';
    case 'booking':
      return op.booking === null ? '' : JSON.stringify(op.booking);
    case 'subscribe':
      return op.subscribed ? '1' : '0';
    default:
      return '';
  }
}

function record(phone: string | null, booking: string | null, phoneId: string, bookingId: string, subscribed: boolean): UserRecord {
  return {
    phone: { value: phone, id: phoneId },
    booking: { value: booking === null ? null : (JSON.parse(booking) as JsonObject), id: bookingId },
    subscribed: { value: subscribed, id: '' },
  };
}

function throwFirst(results: [Error | null, unknown][] | null): unknown[] {
  if (!results) throw new Error('pipeline aborted');
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigurationError(ErrorCode.INVALID_URL, `RedisAdapter: "${maskUrl(url)}" is not a URL (expected redis://[user:password@]host:port)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new ConfigurationError(ErrorCode.INVALID_URL, `RedisAdapter: ${maskUrl(url)} must start with redis:// or rediss://`);
  }
  return url;
}

function checkPrefix(prefix: string): string {
  if (/^[A-Za-z0-9_:.-]{1,64}$/.test(prefix)) return prefix;
  throw new ConfigurationError(ErrorCode.INVALID_OPTION, `RedisAdapter: keyPrefix must be 1-64 characters of [A-Za-z0-9_:.-], got ${JSON.stringify(prefix)}`);
}
