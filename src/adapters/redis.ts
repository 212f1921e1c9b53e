import { createHash } from 'node:crypto';
import type { Cluster, ClusterOptions, Command, Redis, RedisOptions } from 'ioredis';
import type {
  AdapterConfig,
  CacheMiss,
  HistoryRead,
  HistoryReadOptions,
  ReadOptions,
  ThreadRecord,
  ThreadRecordPage,
  UserRecord,
  WriteOutcome,
} from './contract.js';
import type { CacheAdapter, JournalEntry } from '../cache/contract.js';
import { decodeMessage, decodeOp, encodeMessage, encodeOp } from '../model/codec.js';
import { defaultTokens } from '../model/budget.js';
import { withDeadline } from '../routing/deadline.js';
import { adapterInUse, adapterNotBound, ConfigurationError, ErrorCode, TierError } from '../errors.js';
import { loadPeer } from '../load.js';
import { maskUrl } from '../logger.js';
import { fromMessage, MAIN_THREAD, type Op, type SummaryRecord } from '../model/ops.js';
import { idTime } from '../model/ids.js';
import { positive } from '../options.js';
import { checkUrl } from '../model/validate.js';
import type { JsonObject, Message } from '../types.js';
import { RedisKeys } from './redis-keys.js';
import { ClusterInvalidationFeed, RedisInvalidationFeed, type InvalidationFeed, type InvalidationListener } from '../cache/invalidation-feed.js';
import type { DataKeyRecord } from '../crypto/keys.js';
import * as lua from './redis-scripts.js';
import { FLAG } from './redis-scripts.js';

export interface RedisAdapterOptions {
  /** `redis://` or `rediss://` (TLS) URL. @default 'redis://127.0.0.1:6379' when no client or nodes are given */
  url?: string;
  /** Startup nodes of a Redis Cluster (`'redis://:pw@host:port'` strings or `{ host, port }`); the adapter opens an ioredis Cluster. */
  nodes?: (string | { host: string; port: number })[];
  /** A ready ioredis client or Cluster; the store uses it as it is and never closes it. */
  client?: Redis | Cluster;
  /** Start of every key; one user's keys share a Cluster slot through a `{user}` hash tag. @default 'tcs' */
  keyPrefix?: string;
  /** Shards of the subscriber set and of the pending index (spread over a Cluster's masters). @default 16 on a Cluster, 1 otherwise */
  shards?: number;
  /** Deadline of every command, in milliseconds. @default 500 */
  timeoutMs?: number;
  /** Deadline of opening a connection, in milliseconds. @default 1000 */
  connectTimeoutMs?: number;
  /** Extra ioredis options for the client the adapter opens (each node's, on a Cluster). */
  redisOptions?: RedisOptions;
  /** Extra ioredis Cluster options for the Cluster the adapter opens. */
  clusterOptions?: ClusterOptions;
}

type IoRedis = typeof import('ioredis');
type Script = { lua: string; sha: string };
type Reply = unknown[];

const script = (source: string): Script => ({ lua: source, sha: createHash('sha1').update(source).digest('hex') });
/** Data keys: a re-wrap only replaces the wrap it read (a destroy or another re-wrap in between wins). */
const REWRAP_DATA_KEY = `local v = redis.call('HGET', KEYS[1], ARGV[1])
if v ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;
const S = {
  rewrapDataKey: script(REWRAP_DATA_KEY),
  write: script(lua.WRITE),
  writeLean: script(lua.WRITE_LEAN),
  applySubscription: script(lua.APPLY_SUBSCRIPTION),
  countPending: script(lua.COUNT_PENDING),
  readHistory: script(lua.READ_HISTORY),
  readHistoryDurable: script(lua.READ_HISTORY_DURABLE),
  readUser: script(lua.READ_USER),
  readSubscribers: script(lua.READ_SUBSCRIBERS),
  fillHistory: script(lua.FILL_HISTORY),
  fillUser: script(lua.FILL_USER),
  fillSubscribers: script(lua.FILL_SUBSCRIBERS),
  ack: script(lua.ACK),
  ackMany: script(lua.ACK_MANY),
  ackJournal: script(lua.ACK_JOURNAL),
  ackIndex: script(lua.ACK_INDEX),
  indexJournal: script(lua.INDEX_JOURNAL),
  readMessage: script(lua.READ_MESSAGE),
  invalidate: script(lua.INVALIDATE),
  listThreads: script(lua.LIST_THREADS),
  acquireLock: script(lua.ACQUIRE_LOCK),
  releaseLock: script(lua.RELEASE_LOCK),
};

/**
 * On a Cluster, how long a pending count with no journal entry behind it may last before it is
 * taken as a write whose second step never ran: a write's two steps take at most a few command
 * deadlines (a socket that stops answering is destroyed at twice the deadline, unsent commands with it).
 */
const IDLE_COUNT_MS = 10_000;
/** Users per ACK_MANY script: each takes a few commands, and a script holds Redis while it runs. */
const ACK_GROUP = 100;
/** The kinds of op `WRITE_LEAN` handles (in the cache role). */
const LEAN_KINDS: ReadonlySet<Op['kind']> = new Set(['append', 'phone', 'booking', 'subscribe']);
const REDIS_PROTOCOLS = ['redis:', 'rediss:'];

const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|Connection is closed|Stream isn't writeable|Socket timeout|Command timed out|LOADING|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready|Too many Cluster redirections/;

/** The Redis tier: hot copies with TTLs and the pending journal (or, with no PostgreSQL, the system of record). */
export class RedisAdapter implements CacheAdapter {
  readonly name = 'redis';
  readonly keyPrefix: string;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly client: Redis | Cluster;
  /** True on a Redis Cluster: shared keys live in other slots than a user's, so writes take two steps. */
  readonly cluster: boolean;
  readonly #keys: RedisKeys;
  readonly #owned: boolean;
  readonly #urls: string[];
  #config: AdapterConfig | undefined;
  #closed = false;
  #lastSocketError: Error | undefined;
  /** The in-process tier's feed, once asked for: reads with `track` go through its tracked connection. */
  #feed: RedisInvalidationFeed | ClusterInvalidationFeed | undefined;
  /** ioredis's command class, to send a write script behind a PING in one write (`#ordered`). */
  readonly #Command: typeof Command | undefined;

  constructor(options: RedisAdapterOptions = {}) {
    this.keyPrefix = checkPrefix(options.keyPrefix ?? 'tcs');
    this.timeoutMs = positive(options.timeoutMs, 'RedisAdapter: timeoutMs', 500);
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 'RedisAdapter: connectTimeoutMs', 1000);
    if (options.client) {
      this.client = options.client;
      this.#owned = false;
      this.#urls = [];
      try {
        this.#Command = loadPeer<IoRedis>('ioredis', 'RedisAdapter').Command;
      } catch {
        this.#Command = undefined; // a client from elsewhere: its writes go without the PING
      }
    } else {
      const ioredis = loadPeer<IoRedis>('ioredis', 'RedisAdapter');
      this.#Command = ioredis.Command;
      this.#urls = (options.nodes ?? [options.url ?? 'redis://127.0.0.1:6379']).map((n) =>
        typeof n === 'string' ? checkUrl(n, 'RedisAdapter: url', REDIS_PROTOCOLS) : `redis://${n.host}:${n.port}`,
      );
      const redisOptions = this.#clientOptions(options.redisOptions);
      // ioredis 6's constructor types reject its own option types under exactOptionalPropertyTypes.
      this.client = options.nodes
        ? new ioredis.Cluster(options.nodes, {
            lazyConnect: true,
            enableOfflineQueue: false,
            slotsRefreshTimeout: this.connectTimeoutMs,
            clusterRetryStrategy: (times: number) => Math.min(100 * times, 1000),
            redisOptions,
            ...options.clusterOptions,
          } as never)
        : new ioredis.default(this.#urls[0] as string, redisOptions as never);
      // Failures surface through commands and the store's breaker; the last one explains "Connection is closed".
      this.client.on('error', (error: Error) => (this.#lastSocketError = error));
      this.#owned = true;
    }
    this.cluster = 'isCluster' in this.client && this.client.isCluster === true;
    const shards = positive(options.shards, 'RedisAdapter: shards', this.cluster ? 16 : 1);
    this.#keys = new RedisKeys(this.keyPrefix, Math.floor(shards));
  }

  // Explicit rather than ioredis's defaults, which changed in ioredis 6.
  #clientOptions(extra: RedisOptions | undefined): RedisOptions {
    return {
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
      ...extra,
    };
  }

  /** The connection target with any password masked, for logs. */
  describe(): string {
    if (this.#urls.length === 0) return 'a client passed in';
    return this.cluster ? `cluster ${this.#urls.map(maskUrl).join(',')}` : maskUrl(this.#urls[0] as string);
  }

  /** Passwords the store must mask everywhere. */
  secrets(): string[] {
    return this.#urls;
  }

  bind(config: AdapterConfig): void {
    if (this.#config) throw adapterInUse('RedisAdapter');
    this.#config = config;
  }

  get #cfg(): AdapterConfig {
    if (!this.#config) throw adapterNotBound('RedisAdapter');
    return this.#config;
  }

  get #durable(): boolean {
    return this.#cfg.role === 'durable';
  }

  /** The meta hash (versions) lives as long as the longest-lived copy it guards. */
  get #metaTtl(): number {
    return Math.max(this.#cfg.ttlMs.history, this.#cfg.ttlMs.userData);
  }

  get #role(): string {
    return this.#durable ? FLAG.durable : FLAG.cache;
  }

  async connect(): Promise<void> {
    const status = this.client.status;
    if (status === 'ready') return;
    const connected =
      status === 'wait' || status === 'end' || status === 'close' ? this.client.connect() : new Promise<void>((resolve) => this.client.once('ready', resolve));
    try {
      await withDeadline(this.name, this.connectTimeoutMs, connected);
    } catch (error) {
      const cause = this.#lastSocketError;
      if (!cause || !(error instanceof Error) || error.message.includes(cause.message)) throw error;
      throw Object.assign(new Error(`${error.message} (${cause.message})`, { cause }), { code: (cause as NodeJS.ErrnoException).code });
    }
  }

  async ping(): Promise<void> {
    await this.#call(this.client.ping());
  }

  /**
   * Writes ops; with `pending`, journals them in the same atomic step for the syncer to move.
   * Returns, per op, whether it changed a copy Redis holds (false: none was there to change).
   * On a Cluster a pending user is counted in the index first (so a crash between the steps
   * leaves a count the syncer heals, never an entry it cannot find), and the subscriber shard
   * changes after.
   */
  async write(ops: readonly Op[], options: { pending?: boolean } = {}): Promise<WriteOutcome[]> {
    if (ops.length === 0) return [];
    const now = Date.now();
    if (!this.cluster) return this.#writeScript(ops, options.pending === true, true, now);
    const byUser = groupBy(ops, (op) => op.user);
    // A failed write keeps its count: the script may have run all the same (a timeout).
    if (options.pending) await Promise.all(byUser.map(([user, list]) => this.#countPending(user, list.length)));
    const flags = await Promise.all(byUser.map(([, list]) => this.#writeScript(list, options.pending === true, false, now)));
    const written = byUser.flatMap(([, list]) => list);
    const outcomes = flags.flat();
    await Promise.all(
      written.map(async (op, i) => {
        const outcome = outcomes[i];
        // Counted before the script, which journaled nothing for a repeat, or dropped older entries.
        const uncount = typeof outcome === 'string' ? 1 : op.kind === 'delete' ? Math.floor(Number(outcome) / 16) : 0;
        if (options.pending && uncount > 0) await this.#countPending(op.user, -uncount);
      }),
    );
    const held = outcomes.map(toOutcome);
    await Promise.all(
      written.map(async (op, i) => {
        const outcome = outcomes[i];
        if (typeof outcome !== 'number') return;
        // The drafts index is advisory: a crash before this step leaves a draft the sweeper does not see.
        if ((outcome & 12) !== 0) await this.#indexDraft(op, (outcome & 4) !== 0, now);
        // Only a subscription change the user's slot accepted (last writer wins there) touches the shard.
        if ((outcome & 2) === 0) return;
        const present = await this.#applySubscription(op);
        held[i] = present && op.kind === 'subscribe';
      }),
    );
    const position = new Map(written.map((op, i) => [op, i]));
    return ops.map((op) => held[position.get(op) as number] ?? false);
  }

  async #writeScript(ops: readonly Op[], pending: boolean, shared: true, now: number): Promise<WriteOutcome[]>;
  async #writeScript(ops: readonly Op[], pending: boolean, shared: false, now: number): Promise<(number | string)[]>;
  /** One script call; `shared` also changes the shared keys (one Redis). Returns the raw per-op outcomes on a Cluster. */
  async #writeScript(ops: readonly Op[], pending: boolean, shared: boolean, now: number): Promise<WriteOutcome[] | (number | string)[]> {
    const cfg = this.#cfg;
    const ttl = this.#durable ? { history: 0, userData: 0, subscribers: 0 } : cfg.ttlMs;
    const keys: string[] = [];
    const args: (string | number)[] = [
      this.#role,
      cfg.historyLimit,
      ttl.history,
      ttl.userData,
      ttl.subscribers,
      shared ? FLAG.sharedHere : FLAG.sharedByCaller,
      now,
    ];
    for (const op of ops) {
      const shard = this.#keys.shardOf(op.user);
      const thread = 'thread' in op ? op.thread : MAIN_THREAD;
      const [, d, m, j, i] = this.#keys.user(op.user);
      keys.push(this.#keys.history(op.user, thread), d, m, j, i);
      if (shared) keys.push(...this.#keys.subscribers(shard), ...this.#keys.pending(shard).slice(0, 2), this.#keys.draftIndex(shard));
      const entry = pending ? (op.kind === 'append' ? FLAG.entryIsPayload : encodeOp(op)) : '';
      const append = op.kind === 'append';
      args.push(op.kind, op.id, op.user, payload(op), entry, append ? (op.key ?? '') : '', thread, append && op.status === 'streaming' ? FLAG.draft : '');
    }
    // The hot path (a cache's appends and user fields) runs the lean script: same effect, less to set up per call.
    const lean = !this.#durable && ops.every((op) => LEAN_KINDS.has(op.kind));
    const flags = (await this.#ordered(lean ? S.writeLean : S.write, keys, args)) as (number | string)[];
    return shared ? flags.map(toOutcome) : flags;
  }

  async #countPending(user: string, count: number): Promise<void> {
    await this.#eval(S.countPending, this.#keys.pending(this.#keys.shardOf(user)).slice(0, 2), [user, count]);
  }

  /** A Cluster's drafts index step: the draft's flush time, or its end. */
  async #indexDraft(op: Op, progress: boolean, now: number): Promise<void> {
    const id = op.kind === 'edit' ? op.target : op.id;
    const index = this.#keys.draftIndex(this.#keys.shardOf(op.user));
    await this.#call(progress ? this.client.zadd(index, now, id + op.user) : this.client.zrem(index, id + op.user));
  }

  async #applySubscription(op: Op): Promise<boolean> {
    const ttl = this.#durable ? 0 : this.#cfg.ttlMs.subscribers;
    const add = op.kind === 'subscribe' && op.subscribed ? '1' : '0';
    const keys = this.#keys.subscribers(this.#keys.shardOf(op.user));
    return (await this.#eval(S.applySubscription, keys, [this.#role, ttl, op.user, add])) === 1;
  }

  async readHistory(user: string, limit: number, options: HistoryReadOptions = {}): Promise<HistoryRead | CacheMiss> {
    const thread = options.thread ?? MAIN_THREAD;
    const [, , m, j] = this.#keys.user(user);
    const h = this.#keys.history(user, thread);
    const on = this.#on(options);
    // An item of 'main' written by 0.1 names no thread: the list it is read from does.
    const decode = (item: string) => decodeMessage(item, thread);
    if (this.#durable) {
      const [floor, cuts, ...items] = (await this.#eval(S.readHistoryDurable, [h, m], [limit, thread], on)) as string[];
      const read: HistoryRead = { messages: items.map(decode), floor: floor ?? '' };
      if (cuts) read.cuts = parseCuts(cuts);
      return read;
    }
    // A plain LRANGE on the hot path; only a miss pays for the script that reads the version
    // (unless a miss is likely: then the script alone, one round trip either way).
    if (!options.missLikely) {
      const items = await this.#call(on.lrange(h, -limit, -1));
      if (items.length > 0) return { messages: items.map(decode), floor: '' };
    }
    const reply = (await this.#eval(S.readHistory, [h, m, j], [limit, this.#metaTtl], on)) as Reply;
    if (reply[0] === 0) return this.#miss(user, reply);
    return { messages: (reply as string[]).map(decode), floor: '' };
  }

  /** A message of any thread: in the cache role, of the copies held (null when none holds it). */
  async readMessage(user: string, id: string): Promise<Message | null> {
    const [thread, item] = (await this.#eval(S.readMessage, [this.#keys.user(user)[2]], [id])) as string[];
    return thread === undefined || item === undefined ? null : decodeMessage(item, thread);
  }

  /**
   * The user's threads, most recently active first (durable role; a cache is never asked). The
   * cursor names the last thread of the page by its activity and id, so a page starts after it
   * even when threads came or went in between.
   */
  async listThreads(user: string, limit: number, cursor: string | null): Promise<ThreadRecordPage> {
    const reply = (await this.#eval(S.listThreads, [this.#keys.user(user)[2]], [])) as (string | number)[];
    const all: ThreadRecord[] = [];
    for (let i = 0; i + 6 < reply.length; i += 7) {
      const [id, count, created, lastId, active, title, stamp] = reply.slice(i, i + 7).map(String) as [string, string, string, string, string, string, string];
      const messages = Number(count);
      const titled = title === '' ? null : (JSON.parse(title) as string);
      if (messages === 0 && titled === null) continue;
      const titleAt = titled === null ? 0 : idTime(stamp);
      const createdAt = messages > 0 ? Number(created) : titleAt;
      const updatedAt = Math.max(messages > 0 ? Number(active) : 0, titleAt);
      all.push({ id, title: titled, messages, createdAt: new Date(createdAt), updatedAt: new Date(updatedAt), lastId });
    }
    all.sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? -1 : 1));
    let start = 0;
    if (cursor !== null) {
      const split = cursor.indexOf(':');
      const at = Number(cursor.slice(0, split));
      const after = cursor.slice(split + 1);
      start = all.findIndex((t) => t.updatedAt.getTime() < at || (t.updatedAt.getTime() === at && t.id > after));
      if (start < 0) start = all.length;
    }
    const threads = all.slice(start, start + limit);
    const last = threads[threads.length - 1];
    const more = start + limit < all.length && last !== undefined;
    return { threads, cursor: more ? `${last.updatedAt.getTime()}:${last.id}` : null };
  }

  /** The latest text of a draft that reached Redis and when (a flush, or its start); null when it ended or is unknown. */
  async draftProgress(user: string, id: string): Promise<{ message: Message; at: number } | null> {
    const record = await this.#call(this.client.hget(this.#keys.drafts(user), id));
    if (record === null) return null;
    const split = record.indexOf('|');
    return { message: decodeMessage(record.slice(split + 1)), at: Number(record.slice(0, split)) };
  }

  /**
   * Up to `limit` drafts last flushed before `before` (ms), oldest first, over every user: the
   * ones a dead process may have left streaming. The index is advisory; entries of drafts that
   * ended meanwhile are dropped here.
   */
  async staleDrafts(before: number, limit: number): Promise<{ user: string; id: string }[]> {
    if (limit <= 0) return [];
    const pages = await this.#call(
      Promise.all(
        this.#keys.shardList().map((shard) => this.client.zrangebyscore(this.#keys.draftIndex(shard), '-inf', `(${before}`, 'WITHSCORES', 'LIMIT', 0, limit)),
      ),
    );
    const found: { user: string; id: string; at: number; shard: number; member: string }[] = [];
    pages.forEach((page, shard) => {
      for (let i = 0; i + 1 < page.length; i += 2) {
        const member = page[i] as string;
        found.push({ id: member.slice(0, 26), user: member.slice(26), at: Number(page[i + 1]), shard, member });
      }
    });
    found.sort((a, b) => a.at - b.at);
    const picked = found.slice(0, limit);
    const live = await this.#call(Promise.all(picked.map((d) => this.client.hexists(this.#keys.drafts(d.user), d.id))));
    const gone = picked.filter((_, i) => live[i] === 0);
    if (gone.length > 0) await this.#call(Promise.all(gone.map((d) => this.client.zrem(this.#keys.draftIndex(d.shard), d.member))));
    return picked.filter((_, i) => live[i] === 1).map(({ user, id }) => ({ user, id }));
  }

  async readUser(user: string, options: ReadOptions = {}): Promise<UserRecord | CacheMiss> {
    const [, d, m, j] = this.#keys.user(user);
    const on = this.#on(options);
    if (this.#durable) {
      const [set] = this.#keys.subscribers(this.#keys.shardOf(user));
      const [[phone, booking, phoneId, bookingId], subscribed] = await Promise.all([
        this.#call(on.hmget(d, 'p', 'b', 'pv', 'bv')),
        this.#call(this.client.sismember(set, user)),
      ]);
      return record(phone ?? null, booking ?? null, phoneId ?? '', bookingId ?? '', subscribed === 1);
    }
    const reply = (await this.#eval(S.readUser, [d, m, j], [this.#metaTtl], on)) as Reply;
    if (reply[0] === 0) return this.#miss(user, reply);
    return record((reply[1] as string | null) ?? null, (reply[2] as string | null) ?? null, '', '', false);
  }

  /**
   * Every subscriber; a miss when any shard has no copy. The miss's version lists the versions of
   * the missing shards, which `fillSubscribers` fills.
   */
  async readSubscribers(): Promise<string[] | CacheMiss> {
    if (this.#keys.shards === 1 && !this.#durable) {
      // A held copy always has its '' marker, so an empty answer is a miss.
      const members = await this.#call(this.client.smembers(this.#keys.subscribers(0)[0]));
      if (members.length > 0) return members.filter((member) => member !== '');
    }
    const shards = this.#keys.shardList();
    const replies = await Promise.all(shards.map((shard) => this.#eval(S.readSubscribers, this.#keys.subscribers(shard), ['']) as Promise<Reply>));
    const missing = shards.filter((shard) => replies[shard]?.[0] === 0);
    if (missing.length > 0 && !this.#durable) {
      const version = JSON.stringify(Object.fromEntries(missing.map((shard) => [shard, String(replies[shard]?.[1])])));
      return { miss: true, version, pending: await this.#pendingSubscriptions() };
    }
    return replies.flatMap((reply) => (reply[0] === 0 ? [] : (reply[1] as string[]).filter((member) => member !== '')));
  }

  async isSubscriber(user: string): Promise<boolean | CacheMiss> {
    const shard = this.#keys.shardOf(user);
    const reply = (await this.#eval(S.readSubscribers, this.#keys.subscribers(shard), [user])) as Reply;
    if (reply[0] === 0) {
      if (this.#durable) return false;
      return { miss: true, version: JSON.stringify({ [shard]: String(reply[1]) }), pending: await this.readPending(user) };
    }
    return reply[1] === 1;
  }

  /** Installs a user's newest messages after a miss, unless something was written since the miss. */
  async fillHistory(user: string, version: string, messages: readonly Message[], thread: string = MAIN_THREAD): Promise<boolean> {
    if (messages.length === 0) return false;
    const m = this.#keys.user(user)[2];
    const items = messages.map((message) => encodeMessage(fromMessage(user, message)));
    const keys = [this.#keys.history(user, thread), m, this.#keys.threads(user)];
    return (await this.#eval(S.fillHistory, keys, [version, this.#cfg.ttlMs.history, thread, ...items])) === 1;
  }

  async fillUser(user: string, version: string, value: UserRecord): Promise<boolean> {
    const [, d, m] = this.#keys.user(user);
    const fields: string[] = [];
    if (value.phone.value !== null) fields.push('p', value.phone.value, 'pv', value.phone.id);
    if (value.booking.value !== null) fields.push('b', JSON.stringify(value.booking.value), 'bv', value.booking.id);
    return (await this.#eval(S.fillUser, [d, m], [version, this.#cfg.ttlMs.userData, ...fields])) === 1;
  }

  /** Fills the shards a `readSubscribers` miss named, each with its own subscribers. */
  async fillSubscribers(version: string, users: readonly string[]): Promise<boolean> {
    const versions = JSON.parse(version) as Record<string, string>;
    const filled = await Promise.all(
      Object.entries(versions).map(async ([shard, shardVersion]) => {
        const members = users.filter((user) => this.#keys.shardOf(user) === Number(shard));
        const args = [shardVersion, this.#cfg.ttlMs.subscribers, ...members];
        return (await this.#eval(S.fillSubscribers, this.#keys.subscribers(Number(shard)), args)) === 1;
      }),
    );
    return filled.every(Boolean);
  }

  /** Drops hot copies that missed writes (and stops fills in flight from installing old ones). */
  async invalidate(users: Iterable<string>, subscribers: boolean): Promise<void> {
    const ttl = this.#metaTtl;
    const calls: Promise<unknown>[] = [];
    for (const user of users) {
      const [, d, m] = this.#keys.user(user);
      calls.push(this.#eval(S.invalidate, [m, d], [ttl]));
    }
    if (subscribers) {
      for (const shard of this.#keys.shardList()) {
        const [set, version] = this.#keys.subscribers(shard);
        calls.push(this.client.del(set), this.client.incr(version));
      }
    }
    await this.#call(Promise.all(calls));
  }

  /** Drops every hot copy under the key prefix (SCAN, never KEYS); journals stay. */
  async invalidateAll(): Promise<void> {
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client];
    for (const node of nodes) {
      for (const pattern of this.#keys.copies) {
        let cursor = '0';
        do {
          const [next, keys] = await this.#call(node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
          cursor = next;
          // One call per key: in a Cluster the keys of one batch live in different slots. A version
          // moves rather than goes (a fill whose miss saw it must fail).
          await Promise.all(keys.map((key) => this.#call(key.endsWith(':m') ? node.hincrby(key, 'v', 1) : node.del(key))));
        } while (cursor !== '0');
      }
    }
    await this.invalidate([], true);
  }

  /**
   * What Redis holds for one user, for the CLI's inspect: the threads with a history list (hot
   * copies in the cache role), whether a data hash is there, and how many journal entries wait.
   */
  async holdings(user: string): Promise<{ threads: string[]; userData: boolean; journal: number }> {
    const [, d, , j] = this.#keys.user(user);
    const others = await this.#call(this.client.smembers(this.#keys.threads(user)));
    const threads = ['main', ...others.filter((t) => t !== 'main').sort()];
    const [lists, data, journal] = await this.#call(
      Promise.all([Promise.all(threads.map((t) => this.client.exists(this.#keys.history(user, t)))), this.client.exists(d), this.client.llen(j)]),
    );
    return { threads: threads.filter((_, i) => lists[i] === 1), userData: data === 1, journal };
  }

  /** The pending journal of one user, oldest first. */
  async readPending(user: string): Promise<Op[]> {
    const j = this.#keys.user(user)[3];
    const entries = await this.#call(this.client.lrange(j, 0, -1));
    return entries.map((entry) => decodeOp(user, entry));
  }

  /** Up to `count` users with pending entries, picked at random so concurrent syncers spread out. */
  async pendingUsers(count: number): Promise<string[]> {
    const shards = this.#keys.shardList();
    const offset = Math.floor(Math.random() * shards.length);
    const users: string[] = [];
    for (let i = 0; i < shards.length && users.length < count; i++) {
      const [index] = this.#keys.pending(shards[(offset + i) % shards.length] as number);
      users.push(...((await this.#call(this.client.hrandfield(index, count - users.length))) as string[]));
    }
    return users;
  }

  /**
   * The backstop: finds journals the pending index does not point to (left by 0.1, which kept a
   * set, or by anything else that went wrong) and indexes them, in SCAN pages. Returns how many.
   */
  async indexJournals(): Promise<number> {
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client];
    let indexed = 0;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.#call(node.scan(cursor, 'MATCH', this.#keys.journals, 'COUNT', 1000));
        cursor = next;
        const found = await Promise.all(keys.map((key) => this.#indexJournal(key)));
        indexed += found.filter(Boolean).length;
      } while (cursor !== '0');
    }
    return indexed;
  }

  async #indexJournal(key: string): Promise<boolean> {
    const user = this.#keys.userOfJournal(key);
    const [index, count] = this.#keys.pending(this.#keys.shardOf(user));
    if (!this.cluster) return ((await this.#eval(S.indexJournal, [key, index, count], [user])) as number) > 0;
    const length = await this.#call(this.client.llen(key));
    return length > 0 && ((await this.#eval(S.indexJournal, [index, count], [user, length])) as number) > 0;
  }

  async readJournals(users: readonly string[], perUser: number): Promise<Map<string, JournalEntry[]>> {
    const keys = users.map((user) => this.#keys.user(user)[3]);
    // One Redis: every LRANGE in one write (a Cluster's pipeline must keep to one slot).
    const replies = this.cluster
      ? await this.#call(Promise.all(keys.map((key) => this.client.lrange(key, 0, perUser - 1))))
      : ((await this.#call(this.client.pipeline(keys.map((key) => ['lrange', key, 0, perUser - 1])).exec())) ?? []).map(([error, reply]) => {
          if (error) throw error;
          return reply as string[];
        });
    return new Map(users.map((user, i) => [user, (replies[i] ?? []).map((raw) => journalEntry(user, raw))]));
  }

  /**
   * Removes entries the durable tier now has and uncounts them in the pending index; returns how
   * many are left for that user. One script on one Redis. On a Cluster the journal and the index
   * live in different slots: the journal step runs first and the index step never counts below
   * what that step left, so a crash between them leaves a count too high (healed by the next
   * pass), never an entry the index does not point to.
   */
  async ack(user: string, entries: readonly string[]): Promise<number> {
    const j = this.#keys.user(user)[3];
    const [index, count, idle] = this.#keys.pending(this.#keys.shardOf(user));
    // The ends first (the journal's head, unless another syncer moved it); every entry when not.
    const ends = entries.length > 2 ? ['ends', entries.length, entries[0] as string, entries.at(-1) as string] : undefined;
    const pop = async (script: Script, keys: string[], head: (string | number)[]) =>
      (ends && ((await this.#eval(script, keys, [...head, ...ends])) as [number, number] | null)) ??
      ((await this.#eval(script, keys, [...head, 'all', ...entries])) as [number, number]);
    if (!this.cluster) return (await pop(S.ack, [j, index, count], [user]))[1];
    const [popped, left] = await pop(S.ackJournal, [j], []);
    await this.#eval(S.ackIndex, [index, count, idle], [user, popped, left, Date.now(), Math.max(IDLE_COUNT_MS, 20 * this.timeoutMs)]);
    return left;
  }

  /**
   * `ack` of many users: on one Redis, one script per shard and ACK_GROUP users (a user whose
   * entries are no longer the journal's head is acked alone, sending every entry); on a Cluster,
   * one `ack` per user (each user's journal is in its own slot).
   */
  async ackMany(acks: ReadonlyMap<string, readonly string[]>): Promise<Map<string, number>> {
    const left = new Map<string, number>();
    const ackOne = async (user: string, entries: readonly string[]) => void left.set(user, await this.ack(user, entries));
    if (this.cluster) {
      await Promise.all([...acks].map(([user, entries]) => ackOne(user, entries)));
      return left;
    }
    const groups = groupBy([...acks], ([user]) => String(this.#keys.shardOf(user))).flatMap(([shard, list]) =>
      Array.from({ length: Math.ceil(list.length / ACK_GROUP) }, (_, i) => ({ shard: Number(shard), group: list.slice(i * ACK_GROUP, (i + 1) * ACK_GROUP) })),
    );
    await Promise.all(
      groups.map(async ({ shard, group }) => {
        const [index, count] = this.#keys.pending(shard);
        const keys = [index, count, ...group.map(([user]) => this.#keys.user(user)[3])];
        const args = group.flatMap(([user, entries]) => [user, entries.length, entries[0] ?? '', entries.at(-1) ?? '']);
        const replies = (await this.#eval(S.ackMany, keys, args)) as number[];
        await Promise.all(group.map(([user, entries], i) => (replies[i] === -1 ? ackOne(user, entries) : left.set(user, replies[i] as number))));
      }),
    );
    return left;
  }

  async pendingCount(): Promise<number> {
    const counts = await this.#call(Promise.all(this.#keys.shardList().map((shard) => this.client.get(this.#keys.pending(shard)[1]))));
    return counts.reduce((sum, count) => sum + Math.max(0, Number(count) || 0), 0);
  }

  /**
   * The durable role's summary of a thread, or null. The cache role holds no summary (the store
   * reads summaries from the durable tier, with pending ops laid over): it answers null.
   */
  async readSummary(user: string, thread: string): Promise<SummaryRecord | null> {
    if (!this.#durable) return null;
    const record = await this.#call(this.client.hget(this.#keys.summaries(user), thread));
    const parts = record === null ? null : /^([^\n]*)\n([^\n]*)\n([^\n]*)\n([\s\S]*)$/.exec(record);
    if (!parts) return null;
    return { id: parts[1] as string, covers: parts[2] as string, dirty: parts[3] as string, text: parts[4] as string };
  }

  /** One summary run per thread at a time, across processes (either role). */
  async leaseSummary(user: string, thread: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.#eval(S.acquireLock, [this.#keys.summaryLease(user, thread)], [token, ttlMs])) === 1;
  }

  async releaseSummary(user: string, thread: string, token: string): Promise<void> {
    await this.#eval(S.releaseLock, [this.#keys.summaryLease(user, thread)], [token]);
  }

  /** A lease that keeps concurrent background syncers from repeating each other's work; a holder may take its own lease again. */
  async acquireLease(token: string, ttlMs: number): Promise<boolean> {
    return (await this.#eval(S.acquireLock, [this.#keys.lock], [token, ttlMs])) === 1;
  }

  async releaseLease(token: string): Promise<void> {
    await this.#eval(S.releaseLock, [this.#keys.lock], [token]);
  }

  // ---- data keys (encryption at rest; see src/crypto/keys.ts). Values: {"m": master id, "w": wrap} or {"x": id of the delete}.

  async readDataKeys(user: string): Promise<DataKeyRecord[]> {
    const all = await this.#call(this.client.hgetall(this.#keys.dataKeys(user)));
    return Object.entries(all)
      .map(([id, value]) => dataKeyOf(id, value))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async saveDataKey(user: string, record: DataKeyRecord): Promise<void> {
    await this.#call(this.client.hsetnx(this.#keys.dataKeys(user), record.id, JSON.stringify({ m: record.master, w: record.wrapped })));
  }

  async destroyDataKeys(user: string, upTo: string): Promise<void> {
    const key = this.#keys.dataKeys(user);
    const doomed = (await this.readDataKeys(user)).filter((record) => record.id <= upTo && record.destroyed === undefined);
    if (doomed.length === 0) return;
    const tombstone = JSON.stringify({ x: upTo });
    await this.#call(this.client.hset(key, ...doomed.flatMap((record) => [record.id, tombstone])));
  }

  async staleDataKeys(
    master: string,
    cursor: string | null,
    limit: number,
  ): Promise<{ keys: { user: string; record: DataKeyRecord }[]; cursor: string | null }> {
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client];
    let [node, at] = cursor === null ? [0, '0'] : (JSON.parse(cursor) as [number, string]);
    const keys: { user: string; record: DataKeyRecord }[] = [];
    const target = nodes[node];
    if (!target) return { keys, cursor: null };
    const [next, found] = await this.#call(target.scan(at, 'MATCH', this.#keys.allDataKeys, 'COUNT', limit));
    for (const key of found) {
      const user = key.slice(this.keyPrefix.length + 2, -3);
      for (const record of await this.readDataKeys(user)) if (record.destroyed === undefined && record.master !== master) keys.push({ user, record });
    }
    at = next;
    if (at === '0') {
      node++;
      if (node >= nodes.length) return { keys, cursor: null };
    }
    return { keys, cursor: JSON.stringify([node, at]) };
  }

  async rewrapDataKey(user: string, id: string, from: string, to: { master: string; wrapped: string }): Promise<boolean> {
    const key = this.#keys.dataKeys(user);
    const current = (await this.readDataKeys(user)).find((record) => record.id === id);
    if (!current || current.destroyed !== undefined || current.wrapped !== from) return false;
    const before = JSON.stringify({ m: current.master, w: current.wrapped });
    return (await this.#eval(S.rewrapDataKey, [key], [id, before, JSON.stringify({ m: to.master, w: to.wrapped })])) === 1;
  }

  /** Calls `listener` each time the client (re)connects, so a restart of Redis can be noticed. */
  onReady(listener: () => void): void {
    this.client.on('ready', listener);
  }

  /** The invalidation feed of an in-process tier (connections of its own; on a Cluster, on every node). */
  invalidations(listener: InvalidationListener): InvalidationFeed {
    this.#feed = this.cluster
      ? new ClusterInvalidationFeed(this.client as Cluster, this.keyPrefix, listener)
      : new RedisInvalidationFeed(this.client as Redis, this.keyPrefix, listener);
    return this.#feed;
  }

  /** The server's run id: it changes when Redis restarts (and may have lost what it held); '' on a Cluster. */
  async runId(): Promise<string> {
    if (this.cluster) return '';
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
    const indexes = this.#keys.shardList().map((shard) => this.#keys.pending(shard)[0]);
    const users = (await this.#call(Promise.all(indexes.map((index) => this.client.hkeys(index))))).flat();
    if (users.length === 0) return [];
    const journals = await this.readJournals(users, 0);
    return [...journals.values()].flat().flatMap(({ op }) => (op?.kind === 'subscribe' || op?.kind === 'delete' ? [op] : []));
  }

  #miss(user: string, reply: Reply): CacheMiss {
    return { miss: true, version: String(reply[1]), pending: (reply.slice(2) as string[]).map((e) => decodeOp(user, e)) };
  }

  /**
   * The connection a read goes on: with `track`, the feed's tracked one while the feed is live (so
   * Redis reports later changes to what it saw); else the client. A read asked to be tracked that
   * could not be fills nothing: the in-process tier serves only fills made while the feed was live throughout.
   */
  #on(options: ReadOptions): Redis | Cluster {
    return (options.track ? this.#feed?.reader() : undefined) ?? this.client;
  }

  /**
   * A write script sent in one write right after a PING, so Redis queues the PING's reply first
   * and then, while the script runs, the invalidations it sends to other processes' feeds; it
   * flushes the clients it queued last first, so every feed gets its message before this writer
   * gets its acknowledgement, as in broadcast tracking (Redis 6-7 without I/O threads; otherwise
   * the gap is microseconds). A write acknowledged anywhere is then seen by the next read of every
   * other process that applied what had reached its socket (`Reads` polls for I/O twice first).
   * The two commands are handed to ioredis with a sink that writes their wire forms together:
   * one write call (corking the socket instead made Node write through writev, at a high cost in system time).
   */
  #ordered(s: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    const client = this.client as Redis;
    const Cmd = this.#Command;
    if (this.cluster || !Cmd || client.status !== 'ready' || !client.stream) return this.#eval(s, keys, args);
    let data = '';
    let left = 2;
    const sink = {
      write(chunk: string | Buffer) {
        // A client that resends unanswered commands after a reconnect writes them here again, one by one.
        if (left === 0) return void client.stream.write(chunk);
        data += String(chunk);
        if (--left === 0) client.stream.write(data);
      },
    };
    const prefix = client.options.keyPrefix;
    const options = prefix === undefined ? { replyEncoding: 'utf8' as const } : { replyEncoding: 'utf8' as const, keyPrefix: prefix };
    const ping = new Cmd('ping', [], options);
    ping.promise.catch(() => {}); // its failure is the script's too
    client.sendCommand(ping, sink as never);
    const script = new Cmd('evalsha', [s.sha, keys.length, ...keys, ...args], options);
    client.sendCommand(script, sink as never);
    return this.#call(script.promise).catch((error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.#eval(s, keys, args);
    });
  }

  async #eval(s: Script, keys: string[], args: (string | number)[], on: Redis | Cluster = this.client): Promise<unknown> {
    try {
      return await this.#call(on.evalsha(s.sha, keys.length, ...keys, ...args));
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return this.#call(on.eval(s.lua, keys.length, ...keys, ...args));
    }
  }

  // The adapter's own client times out by itself; a client passed in gets a deadline here.
  #call<T>(work: Promise<T>): Promise<T> {
    const options = this.client.options as { redisOptions?: RedisOptions } & RedisOptions;
    if (this.#owned || (options.redisOptions ?? options).commandTimeout !== undefined) return work;
    return withDeadline(this.name, this.timeoutMs, work);
  }
}

function dataKeyOf(id: string, value: string): DataKeyRecord {
  const parsed = JSON.parse(value) as { m?: string; w?: string; x?: string };
  if (parsed.x !== undefined) return { id, master: '', wrapped: '', destroyed: parsed.x };
  return { id, master: parsed.m ?? '', wrapped: parsed.w ?? '' };
}

function journalEntry(user: string, raw: string): JournalEntry {
  try {
    return { op: decodeOp(user, raw), raw };
  } catch (error) {
    return { op: undefined, error: error as Error, raw };
  }
}

/** A script's per-op reply: an earlier message's id (a repeated idempotency key), or flags. */
function toOutcome(reply: number | string | undefined): WriteOutcome {
  return typeof reply === 'string' ? reply : ((reply ?? 0) & 1) === 1;
}

/** Groups by key, keeping first-seen order of keys and of items. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): [string, T[]][] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const list = groups.get(key(item));
    if (list) list.push(item);
    else groups.set(key(item), [item]);
  }
  return [...groups];
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
    case 'title':
      return JSON.stringify(op.title);
    case 'cut':
      return `${op.from}\n${op.to}`;
    case 'summary':
      return `${op.covers}\n${op.text}`;
    case 'edit': {
      // The fields an edit replaces, one per line ('' for each absent), the content last: the
      // script writes the item anew from them and the fields of the old item it keeps.
      const byDefault = op.tokens !== undefined && op.tokens === defaultTokens(op);
      const meta = op.meta === undefined ? '' : JSON.stringify(op.meta);
      return [op.target, meta, op.status ?? '', op.updatedAt ?? '', op.tokens ?? '', byDefault ? '1' : '', op.content].join('\n');
    }
    default:
      return '';
  }
}

/** Cut ranges as the durable role keeps them: one "from to" per line. */
function parseCuts(text: string): [string, string][] {
  return text.split('\n').map((line) => {
    const [from = '', to = ''] = line.split(' ');
    return [from, to];
  });
}

function record(phone: string | null, booking: string | null, phoneId: string, bookingId: string, subscribed: boolean): UserRecord {
  return {
    phone: { value: phone, id: phoneId },
    booking: { value: booking === null ? null : (JSON.parse(booking) as JsonObject), id: bookingId },
    subscribed: { value: subscribed, id: '' },
  };
}

function checkPrefix(prefix: string): string {
  if (/^[A-Za-z0-9_:.-]{1,64}$/.test(prefix)) return prefix;
  throw new ConfigurationError(ErrorCode.INVALID_OPTION, `RedisAdapter: keyPrefix must be 1-64 characters of [A-Za-z0-9_:.-], got ${JSON.stringify(prefix)}`);
}
