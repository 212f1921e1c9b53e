import { EventEmitter } from 'node:events';
import type { CacheMiss, StorageAdapter, UserRecord, WriteOutcome } from './adapter.js';
import { isMiss } from './adapter.js';
import { MemoryAdapter } from './adapters/memory.js';
import type { PostgresAdapter } from './adapters/postgres.js';
import type { RedisAdapter } from './adapters/redis.js';
import { fromEnv, type FromEnvOptions } from './env.js';
import { ErrorCode, StoreError } from './errors.js';
import { idTime, nextId } from './ids.js';
import { Batcher } from './batcher.js';
import { Journal } from './journal.js';
import { createLogger, Secrets, type StoreLogger } from './logger.js';
import { applyOp, emptyUserState, mergeHistory, toMessage, type AppendOp, type Op } from './ops.js';
import { MAX_HISTORY_LIMIT, resolveOptions, type ResolvedOptions, type TieredStoreOptions } from './options.js';
import { Stats, type StoreStats } from './stats.js';
import { Syncer } from './syncer.js';
import { isTierUnavailable, Tier } from './tier.js';
import type { BookingData, Health, JsonObject, Message, Role, SyncResult, TierState, UserId } from './types.js';
import { checkBooking, checkContent, checkIdempotencyKey, checkLimit, checkMeta, checkRole, normalizePhone, userKey } from './validate.js';

export interface StoreEvents {
  tierDown: [event: { tier: string; error: Error }];
  tierUp: [event: { tier: string; downForMs: number }];
  syncComplete: [result: SyncResult];
  syncError: [error: Error];
  deadLetter: [event: DeadLetter];
}

/** A write PostgreSQL refused for good (not an outage); kept out of the journal so the rest moves on. */
export interface DeadLetter {
  userId: string;
  kind: Op['kind'];
  id: string;
  error: Error;
  at: Date;
}

export interface AddMemoryOptions {
  /** JSON object stored with the message (tool call ids, model name, ...); at most `limits.metaBytes`. */
  meta?: JsonObject;
  /**
   * Makes a repeat a no-op: a second addMemory for the same user with the same key (a Telegram
   * update re-delivered after a crash: pass its update_id) stores nothing and returns the first
   * message. Kept forever in PostgreSQL, a day (the last 1000 per user) in Redis, for the process in RAM.
   */
  idempotencyKey?: string | number;
}

const MAX_DEAD_LETTERS = 1000;
const OPERATION_OF: Record<Op['kind'], string> = {
  append: 'addMemory',
  clear: 'clearHistory',
  phone: 'setUserPhone',
  booking: 'setBookingData',
  subscribe: 'setEmailSubscriber',
  delete: 'deleteUser',
};
const MAX_STALE_USERS = 100_000;

/**
 * Conversation memory over Redis (fast), PostgreSQL (durable) and RAM (fallback). Every method
 * validates first and writes nothing on bad input; a tier that fails is skipped until it is back.
 */
export class TieredStore extends EventEmitter<StoreEvents> {
  readonly #opts: ResolvedOptions;
  readonly #log: StoreLogger;
  readonly #memory: MemoryAdapter;
  readonly #redis: Tier<RedisAdapter> | undefined;
  readonly #postgres: Tier<PostgresAdapter> | undefined;
  /** Redis when PostgreSQL is there too: hot copies and the pending journal. */
  readonly #cache: Tier<RedisAdapter> | undefined;
  /** PostgreSQL, else Redis, else nothing (memory only). */
  readonly #durable: Tier<StorageAdapter> | undefined;
  readonly #journal: Journal;
  readonly #syncer: Syncer | undefined;
  readonly #started: Promise<void>;
  #inflight = 0;
  #idle: (() => void) | undefined;
  /** Users whose Redis copies missed a write; dropped before Redis serves them again. */
  #stale = new Set<string>();
  #staleSubscribers = false;
  #staleAll = false;
  #ready = false;
  #closed: Promise<void> | undefined;
  #pendingInCache = 0;
  #redisRunId = '';
  /** How long one store call may take: the slowest tier deadline. */
  readonly #budgetMs: number;
  #deadLetters: DeadLetter[] = [];
  readonly #warnedAt = new Map<string, number>();
  readonly #stats = new Stats();
  /** Users this process appended to since the last sync pass, for retention.keepLast. */
  readonly #written = new Set<string>();
  readonly #appends = new Batcher<AppendOp, string | undefined>((ops) => this.#routeAppends(ops));

  constructor(options: TieredStoreOptions = {}) {
    super();
    this.#opts = resolveOptions(options);
    const secrets = new Secrets();
    for (const adapter of [options.redis, options.postgres]) for (const s of adapter?.secrets() ?? []) secrets.add(s);
    this.#log = createLogger(options.logger, secrets);
    this.#memory = options.memory ?? new MemoryAdapter();
    this.#journal = new Journal(this.#opts.journalLimit, this.#memory.maxBytes);

    const { historyLimit, ttlMs } = this.#opts;
    const config = { historyLimit, ttlMs, logger: this.#log, secrets };
    const hooks = (tier: string) => ({
      probeIntervalMs: this.#opts.probeIntervalMs,
      logger: this.#log.child({ tier }),
      secrets,
      recover: (tier: Tier) => this.#recover(tier),
      onDown: (tier: Tier, error: Error) => this.emit('tierDown', { tier: tier.name, error }),
      onError: (tier: Tier) => this.#stats.count(tier.name, 'errors'),
      onUp: (tier: Tier, downForMs: number) => this.#onUp(tier, downForMs),
    });
    this.#memory.bind({ ...config, role: 'durable' });
    options.redis?.bind({ ...config, role: options.postgres ? 'cache' : 'durable' });
    options.postgres?.bind({ ...config, role: 'durable' });
    this.#redis = options.redis && new Tier(options.redis, hooks('redis'));
    this.#postgres = options.postgres && new Tier(options.postgres, hooks('postgres'));
    this.#cache = this.#postgres ? this.#redis : undefined;
    this.#durable = this.#postgres ?? this.#redis;
    this.#budgetMs = Math.max(options.redis?.timeoutMs ?? 0, options.postgres?.timeoutMs ?? 0);
    this.#started = Promise.all([this.#startRedis(), this.#postgres?.start()]).then(() => {
      this.#ready = true;
    });
    this.#syncer = this.#durable && new Syncer({
      ready: this.#started,
      cache: this.#cache,
      durable: this.#durable,
      journal: this.#journal,
      memory: this.#memory,
      batchSize: this.#opts.syncBatchSize,
      logger: this.#log,
      flushed: (users) => this.#invalidate(users, true),
      deadLetter: (op, error) => this.#deadLetter(op, error),
      pendingInCache: (count) => (this.#pendingInCache = count),
      retention: this.#opts.retention,
      takeWrittenUsers: () => {
        const users = [...this.#written];
        this.#written.clear();
        return users;
      },
    });

    this.#log.info(this.#describe(options));
  }

  /** A store configured from the environment (Railway's variables included); memory only when none are set. */
  static fromEnv(env: Record<string, string | undefined> = process.env, options: FromEnvOptions = {}): TieredStore {
    return new TieredStore(fromEnv(env, options));
  }

  // ---- history

  /** Appends a message to the user's history and returns it as stored. */
  async addMemory(userId: UserId, role: Role, content: string, options: AddMemoryOptions = {}): Promise<Message> {
    const user = userKey(userId);
    const checkedRole = checkRole(role);
    const checked = checkContent(content, this.#opts.limits);
    const meta = options.meta === undefined ? undefined : checkMeta(options.meta, this.#opts.limits);
    const key = options.idempotencyKey === undefined ? undefined : checkIdempotencyKey(options.idempotencyKey);
    const id = nextId();
    const op: AppendOp = { kind: 'append', user, id, role: checkedRole, content: checked, createdAt: idTime(id) };
    if (meta !== undefined) op.meta = meta;
    if (key !== undefined) op.key = key;
    const earlier = await this.#write(op);
    const message = toMessage(op);
    return earlier === undefined ? message : { ...message, id: earlier, createdAt: new Date(idTime(earlier)) };
  }

  /** The newest `limit` messages (default `historyLimit`), oldest first. */
  async getHistory(userId: UserId, options: { limit?: number } = {}): Promise<Message[]> {
    const user = userKey(userId);
    const limit = options.limit === undefined ? this.#opts.historyLimit : checkLimit(options.limit, MAX_HISTORY_LIMIT);
    return this.#run('getHistory', (deadline) => this.#readHistory(user, limit, deadline));
  }

  async clearHistory(userId: UserId): Promise<void> {
    await this.#write({ kind: 'clear', user: userKey(userId), id: nextId() });
  }

  // ---- user data

  /** Stores the phone normalised to `+digits` and returns it; `null` removes it. */
  async setUserPhone(userId: UserId, phone: string | null): Promise<string | null> {
    const user = userKey(userId);
    const normalized = phone === null ? null : normalizePhone(phone);
    await this.#write({ kind: 'phone', user, id: nextId(), phone: normalized });
    return normalized;
  }

  async getUserPhone(userId: UserId): Promise<string | null> {
    const user = userKey(userId);
    return (await this.#run('getUserPhone', (deadline) => this.#readUser(user, deadline))).phone.value;
  }

  /** Stores a JSON object (at most `limits.bookingBytes` serialised); `null` removes it. */
  async setBookingData(userId: UserId, data: BookingData | null): Promise<void> {
    const user = userKey(userId);
    const booking = data === null ? null : checkBooking(data, this.#opts.limits);
    await this.#write({ kind: 'booking', user, id: nextId(), booking });
  }

  async getBookingData(userId: UserId): Promise<BookingData | null> {
    const user = userKey(userId);
    return (await this.#run('getBookingData', (deadline) => this.#readUser(user, deadline))).booking.value;
  }

  // ---- subscribers

  async addEmailSubscriber(userId: UserId): Promise<void> {
    await this.#write({ kind: 'subscribe', user: userKey(userId), id: nextId(), subscribed: true });
  }

  async removeEmailSubscriber(userId: UserId): Promise<void> {
    await this.#write({ kind: 'subscribe', user: userKey(userId), id: nextId(), subscribed: false });
  }

  async isEmailSubscriber(userId: UserId): Promise<boolean> {
    const user = userKey(userId);
    return this.#run('isEmailSubscriber', (deadline) => this.#isSubscriber(user, deadline));
  }

  /** Every subscriber's user id as a string, in no particular order. */
  async getEmailSubscribers(): Promise<string[]> {
    return this.#run('getEmailSubscribers', (deadline) => this.#subscribers(deadline));
  }

  /** Erases the user from every tier, pending writes included; a later replay never brings it back. */
  async deleteUser(userId: UserId): Promise<void> {
    await this.#write({ kind: 'delete', user: userKey(userId), id: nextId() });
  }

  // ---- sync, health, lifecycle

  /** Moves pending writes to PostgreSQL every `intervalMs` in the background; returns at once. */
  startSync(intervalMs = 5 * 60_000): void {
    this.#assertOpen();
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
      throw new StoreError(ErrorCode.INVALID_OPTION, `startSync interval must be a positive number of milliseconds, got ${String(intervalMs)}`);
    }
    if (!this.#syncer) return;
    this.#syncer.start(
      intervalMs,
      (result) => this.emit('syncComplete', result),
      (error) => this.#syncFailed(error),
    );
    this.#log.info(`background sync every ${Math.round(intervalMs / 1000)} s`);
  }

  stopSync(): void {
    this.#syncer?.stop();
  }

  /** One sync pass now (after any pass already running). */
  async syncNow(): Promise<SyncResult> {
    return this.#run('syncNow', async () => {
      if (!this.#syncer) return { messages: 0, userData: 0, subscribers: 0, pending: 0, durationMs: 0 };
      try {
        const result = (await this.#syncer.run()) as SyncResult;
        this.emit('syncComplete', result);
        return result;
      } catch (error) {
        this.#syncFailed(error as Error);
        throw error;
      }
    });
  }

  health(): Health {
    const state = (tier: Tier | undefined): TierState => (tier ? (tier.up ? 'up' : 'down') : 'absent');
    return {
      redis: state(this.#redis),
      postgres: state(this.#postgres),
      memory: 'up',
      pending: this.#journal.size + this.#pendingInCache,
      lastSyncAt: this.#syncer?.lastSyncAt ?? null,
      deadLetters: this.#deadLetters.length,
    };
  }

  /** Hits, misses, errors and fallbacks per tier, latency per method, pending writes and sync lag. */
  stats(): StoreStats {
    const oldest = this.#journal.oldestId();
    const syncedAt = this.#syncer?.lastSyncAt?.getTime();
    const now = Date.now();
    const oldestAges = [oldest ? now - idTime(oldest) : undefined, this.#syncer?.oldestPendingAt ? now - this.#syncer.oldestPendingAt : undefined];
    const ages = oldestAges.filter((age): age is number => age !== undefined);
    return {
      tiers: structuredClone(this.#stats.tiers),
      operations: this.#stats.operations(),
      pending: this.health().pending,
      oldestPendingAgeMs: ages.length > 0 ? Math.max(...ages) : null,
      syncLagMs: syncedAt === undefined ? null : now - syncedAt,
      deadLetters: this.#deadLetters.length,
    };
  }

  /** Writes PostgreSQL refused for good, newest last (at most 1000 are kept). */
  deadLetters(): readonly DeadLetter[] {
    return this.#deadLetters;
  }

  /**
   * Stops the syncer, waits for writes in flight, moves what is pending to PostgreSQL if it can
   * within `timeoutMs`, then closes what the store opened. Later calls throw `STORE_CLOSED`.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#shutdown(options.timeoutMs ?? 5000);
    return this.#closed;
  }

  // ---- writes

  /** Routes a write; resolves to the id of an earlier message when `op` repeated its idempotency key. */
  async #write(op: Op): Promise<string | undefined> {
    if (op.kind === 'append' && this.#opts.retention.keepLast !== undefined && this.#written.size < 100_000) this.#written.add(op.user);
    return this.#run(OPERATION_OF[op.kind], (deadline) =>
      op.kind === 'append' && op.key === undefined ? this.#appends.add(op) : this.#route(op, deadline),
    );
  }

  /**
   * Appends that arrived together, routed as one batch where that is the whole story (write-behind
   * into Redis; write-through into both tiers). Anything else (a tier down, a refusal) goes op by
   * op through #route, which handles every case; ops are idempotent, so a partial batch is safe to redo.
   */
  async #routeAppends(ops: AppendOp[]): Promise<(string | undefined)[]> {
    const deadline = Date.now() + this.#budgetMs;
    const single = () => Promise.all(ops.map((op) => this.#route(op, deadline)));
    const durable = this.#durable;
    if (ops.length === 1 || !durable) return single();
    const cache = this.#cache;
    if (cache?.up && this.#opts.writeMode === 'write-behind') {
      try {
        await cache.call((c) => c.write(ops, { pending: true }), deadline);
        this.#pendingInCache += ops.length;
        return ops.map(() => undefined);
      } catch (error) {
        this.#cacheFailed(error);
        return single();
      }
    }
    if (!durable.up || this.#opts.writeMode !== 'write-through') return single();
    const toCache = cache?.up ? cache.call((c) => c.write(ops), deadline) : undefined;
    const [toDurable, cached] = await Promise.allSettled([durable.call((d) => d.write(ops), deadline), toCache]);
    if (toDurable.status === 'rejected') return single();
    if (cache && (toCache === undefined || cached.status === 'rejected')) {
      for (const op of ops) this.#markStale(op);
    } else if (cached.status === 'fulfilled' && cached.value) {
      const cold = new Set(ops.filter((_, i) => cached.value?.[i] === false).map((op) => op.user));
      if (cold.size > 0) await this.#invalidate(cold, false, deadline).catch(() => ops.forEach((op) => cold.has(op.user) && this.#markStale(op)));
    }
    return ops.map(() => undefined);
  }

  async #route(op: Op, deadline: number): Promise<string | undefined> {
    const durable = this.#durable;
    if (!durable) return repeated(this.#memory.writeSync([op]));
    if (op.kind === 'delete') this.#erasePending(op.user);
    const cache = this.#cache;
    if (cache?.up && this.#opts.writeMode === 'write-behind') {
      try {
        const outcome = await cache.call((c) => c.write([op], { pending: true }), deadline);
        this.#pendingInCache++;
        return repeated(outcome);
      } catch (error) {
        this.#cacheFailed(error); // PostgreSQL takes the write directly below
      }
    }
    if (!durable.up) return this.#writeWithoutDurable(op, deadline);
    const toCache = cache?.up && this.#opts.writeMode === 'write-through' ? cache.call((c) => c.write([op]), deadline) : undefined;
    const [toDurable, cached] = await Promise.allSettled([durable.call((d) => d.write([op]), deadline), toCache]);
    const cacheMissed = cache !== undefined && (toCache === undefined || cached.status === 'rejected');
    if (toDurable.status === 'fulfilled') {
      const earlier = repeated(toDurable.value);
      const inCache = cached.status === 'fulfilled' ? cached.value?.[0] : undefined;
      if (cacheMissed) this.#markStale(op);
      // Redis had no copy to change (so one filled from PostgreSQL before this commit would lack
      // it), or it kept a message that PostgreSQL knew as a repeat: drop its copies now.
      else if (inCache === false || (earlier !== undefined && typeof inCache !== 'string')) await this.#invalidateAfter(op, deadline);
      return earlier ?? repeated(cached.status === 'fulfilled' ? cached.value : undefined);
    }
    if (!isTierUnavailable(toDurable.reason)) {
      if (cache) this.#markStale(op);
      throw toDurable.reason;
    }
    return this.#writeWithoutDurable(op, deadline);
  }

  /** PostgreSQL is unreachable: journal in Redis (atomically with the write), else hold in RAM. */
  async #writeWithoutDurable(op: Op, deadline: number): Promise<string | undefined> {
    this.#stats.count(this.#durable?.name ?? 'memory', 'fallbacks');
    const cache = this.#cache;
    if (cache?.up) {
      try {
        const outcome = await cache.call((c) => c.write([op], { pending: true }), deadline);
        // A copy in RAM too, while there is room: a Redis restart before PostgreSQL is back loses nothing.
        if (repeated(outcome) === undefined && !this.#journal.tryPush(op)) this.#pendingInCache++;
        return repeated(outcome);
      } catch (error) {
        this.#cacheFailed(error); // RAM it is
      }
    }
    const earlier = this.#hold(op);
    if (cache) this.#markStale(op);
    return earlier;
  }

  /** Every server is unreachable: RAM and the journal take the write, or both refuse it. */
  #hold(op: Op): string | undefined {
    this.#journal.assertRoom(op);
    const earlier = repeated(this.#memory.writeSync([op]));
    if (earlier === undefined) this.#journal.push(op);
    return earlier;
  }

  #erasePending(user: string): void {
    this.#journal.dropUser(user);
    this.#memory.forget(user);
  }

  // ---- reads

  async #readHistory(user: string, limit: number, deadline: number): Promise<Message[]> {
    if (limit === 0) return [];
    const durable = this.#durable;
    if (!durable) return (await this.#memory.readHistory(user, limit)).messages;
    const { historyLimit } = this.#opts;
    const cache = this.#usableCache(user);
    let miss: CacheMiss | undefined;
    if (cache && limit <= historyLimit) {
      const read = this.#counted(await this.#try(cache.call((c) => c.readHistory(user, limit), deadline)));
      if (read && !isMiss(read)) return read.messages;
      miss = read;
    }
    const want = Math.max(limit, historyLimit);
    if (!durable.up) this.#stats.count(durable.name, 'fallbacks');
    if (durable.up) {
      const [read, cached] = await Promise.all([
        durable.call((d) => d.readHistory(user, want, { fresh: miss !== undefined }), deadline).catch(this.#unlessDown),
        this.#pending(user, miss, cache, deadline),
      ]);
      if (read && !isMiss(read)) {
        const merged = mergeHistory(read.messages, read.floor, user, cached, want);
        if (miss && cache) this.#fill(cache.call((c) => c.fillHistory(user, miss.version, merged.slice(-historyLimit))));
        return merged.length > limit ? merged.slice(-limit) : merged;
      }
    }
    // No durable tier answered: the best this process can do is what the caches and RAM hold.
    const pending = await this.#pending(user, miss, cache, deadline);
    const hot = !miss && cache ? await this.#try(cache.call((c) => c.readHistory(user, Math.min(limit, historyLimit)), deadline)) : undefined;
    const base = hot && !isMiss(hot) ? hot.messages : (await this.#memory.readHistory(user, limit)).messages;
    return mergeHistory(base, '', user, [...(isMiss(hot) ? hot.pending : []), ...pending], limit);
  }

  async #readUser(user: string, deadline: number): Promise<UserRecord> {
    const durable = this.#durable;
    if (!durable) return this.#memory.readUser(user);
    const cache = this.#usableCache(user);
    let miss: CacheMiss | undefined;
    if (cache) {
      const read = this.#counted(await this.#try(cache.call((c) => c.readUser(user), deadline)));
      if (read && !isMiss(read)) return read;
      miss = read;
    }
    const [read, pending] = await Promise.all([
      durable.up ? durable.call((d) => d.readUser(user, { fresh: miss !== undefined }), deadline).catch(this.#unlessDown) : undefined,
      this.#pending(user, miss, cache, deadline),
    ]);
    const base = read && !isMiss(read) ? read : await this.#memory.readUser(user);
    const merged = overlay(base, pending);
    if (miss && cache && read) this.#fill(cache.call((c) => c.fillUser(user, miss.version, merged)));
    return merged;
  }

  async #subscribers(deadline: number): Promise<string[]> {
    const durable = this.#durable;
    if (!durable) return this.#memory.readSubscribers();
    const cache = this.#staleSubscribers || this.#staleAll ? undefined : this.#usableCache('');
    let miss: CacheMiss | undefined;
    if (cache) {
      const read = this.#counted(await this.#try(cache.call((c) => c.readSubscribers(), deadline)));
      if (read && !isMiss(read)) return read;
      miss = read;
    }
    const list = durable.up ? await durable.call((d) => d.readSubscribers({ fresh: miss !== undefined }), deadline).catch(this.#unlessDown) : undefined;
    const base = new Set(list && !isMiss(list) ? list : await this.#memory.readSubscribers());
    const pending = [...(miss?.pending ?? []), ...this.#journal.users().flatMap((u) => this.#journal.forUser(u))];
    for (const user of new Set(pending.map((op) => op.user))) {
      const record = list && durable.up ? await durable.call((d) => d.readUser(user, { fresh: miss !== undefined }), deadline).catch(this.#unlessDown) : undefined;
      const start = record && !isMiss(record) ? record.subscribed : { value: base.has(user), id: '' };
      const state = { ...emptyUserState(), subscribed: { ...start } };
      for (const op of pending) if (op.user === user) applyOp(state, op);
      if (state.subscribed.value) base.add(user);
      else base.delete(user);
    }
    const subscribers = [...base];
    if (miss && cache && list) this.#fill(cache.call((c) => c.fillSubscribers(miss.version, subscribers)));
    return subscribers;
  }

  async #isSubscriber(user: string, deadline: number): Promise<boolean> {
    const cache = this.#staleSubscribers || this.#staleAll ? undefined : this.#usableCache(user);
    if (cache) {
      const read = this.#counted(await this.#try(cache.call((c) => c.isSubscriber(user), deadline)));
      if (typeof read === 'boolean') return read;
      if (read) return (await this.#subscribers(deadline)).includes(user);
    }
    return (await this.#readUser(user, deadline)).subscribed.value;
  }

  /** Ops for `user` that the durable tier may not have: Redis's journal and this process's. */
  async #pending(user: string, miss: CacheMiss | undefined, cache: Tier<RedisAdapter> | undefined, deadline: number): Promise<Op[]> {
    const own = this.#journal.forUser(user);
    if (miss) return [...miss.pending, ...own];
    const cached = cache ? await this.#try(cache.call((c) => c.readPending(user), deadline)) : undefined;
    return cached ? [...cached, ...own] : own;
  }

  #usableCache(user: string): Tier<RedisAdapter> | undefined {
    const cache = this.#cache;
    if (cache?.up && !this.#staleAll && !this.#stale.has(user)) return cache;
    if (cache) this.#stats.count(cache.name, 'fallbacks');
    return undefined;
  }

  /** Counts a cache read as a hit, a miss, or (undefined: it failed) a fallback. */
  #counted<T>(read: T | CacheMiss | undefined): T | CacheMiss | undefined {
    this.#stats.count('redis', read === undefined ? 'fallbacks' : isMiss(read) ? 'misses' : 'hits');
    return read;
  }

  // A cache failure is never the caller's problem: treat it as a miss with nothing pending.
  async #try<T>(work: Promise<T>): Promise<T | undefined> {
    try {
      return await work;
    } catch (error) {
      this.#cacheFailed(error);
      return undefined;
    }
  }

  /**
   * An outage logs once, on the transition; Redis refusing requests while reachable (a full
   * memory, a misconfigured Cluster) would otherwise go unnoticed: warn once a minute per reason.
   */
  #cacheFailed(error: unknown): void {
    if (isTierUnavailable(error)) return;
    const reason = error instanceof Error ? error.message : String(error);
    const now = Date.now();
    if ((this.#warnedAt.get(reason) ?? 0) > now - 60_000) return;
    if (this.#warnedAt.size > 100) this.#warnedAt.clear();
    this.#warnedAt.set(reason, now);
    this.#log.warn(`redis refused a request, PostgreSQL served it instead: ${reason}`);
  }

  readonly #unlessDown = (error: unknown): undefined => {
    if (isTierUnavailable(error)) return undefined;
    throw error;
  };

  #fill(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.#cacheFailed(error));
  }

  // ---- staleness and recovery

  #markStale(op: Op): void {
    this.#stats.count('redis', 'fallbacks');
    if (op.kind === 'subscribe' || op.kind === 'delete') this.#staleSubscribers = true;
    if (this.#stale.size >= MAX_STALE_USERS) this.#staleAll = true;
    else this.#stale.add(op.user);
    // Redis may be up and merely have failed this write: drop its copies now rather than at recovery.
    if (this.#cache?.up) void this.#invalidate(new Set([op.user]), this.#staleSubscribers).catch(() => {});
  }

  async #invalidateAfter(op: Op, deadline: number): Promise<void> {
    const subscribers = op.kind === 'subscribe' || op.kind === 'delete';
    await this.#invalidate(new Set([op.user]), subscribers, deadline).catch(() => this.#markStale(op));
  }

  /** Drops Redis copies of `users`; a user stays stale until that succeeds. */
  async #invalidate(users: Set<string>, subscribers: boolean, deadline?: number): Promise<void> {
    const cache = this.#cache;
    if (!cache) return;
    if (!cache.up) {
      for (const user of users) this.#stale.add(user);
      return;
    }
    await cache.call((c) => c.invalidate(users, subscribers), deadline);
    for (const user of users) this.#stale.delete(user);
    if (subscribers) this.#staleSubscribers = false;
  }

  /** Before Redis serves again: drop every copy that missed writes while it was away. */
  async #recover(tier: Tier): Promise<void> {
    if (tier !== this.#redis) return;
    const redis = tier as Tier<RedisAdapter>;
    await this.#checkRestart(redis.adapter);
    if (tier !== this.#cache) return;
    if (this.#staleAll) await redis.adapter.invalidateAll();
    else await redis.adapter.invalidate(this.#stale, this.#staleSubscribers);
    this.#stale.clear();
    this.#staleAll = false;
    this.#staleSubscribers = false;
  }

  #onUp(tier: Tier, downForMs: number): void {
    this.emit('tierUp', { tier: tier.name, downForMs });
    // What waited for PostgreSQL (here and in Redis's journal) moves now, without waiting for startSync.
    if (tier === this.#durable || (tier === this.#cache && this.#durable?.up)) {
      this.#syncer?.run(true).catch((error: unknown) => this.#syncFailed(error as Error));
    }
  }

  #deadLetter(op: Op, error: Error): void {
    const letter: DeadLetter = { userId: op.user, kind: op.kind, id: op.id, error, at: new Date() };
    this.#deadLetters.push(letter);
    if (this.#deadLetters.length > MAX_DEAD_LETTERS) this.#deadLetters.shift();
    this.#log.error(`postgres refused a ${op.kind} of user ${op.user} for good (${error.message}); set aside as a dead letter`);
    this.emit('deadLetter', letter);
    // Kept where other processes (and the doctor command) can see it.
    void this.#postgres
      ?.call((pg) => pg.recordDeadLetter(op, error.message))
      .catch((e: unknown) => this.#log.warn(`could not record the dead letter in PostgreSQL: ${(e as Error).message}`));
  }

  #syncFailed(error: Error): void {
    this.#log.warn(`sync failed: ${error.message}`);
    this.emit('syncError', error);
  }

  /** A Redis that restarted has lost what it held: say what that means, once per restart. */
  async #checkRestart(redis: RedisAdapter): Promise<void> {
    const runId = await redis.runId();
    if (this.#redisRunId && runId !== this.#redisRunId) {
      this.#pendingInCache = 0;
      this.#log.warn(
        `redis restarted (its run id changed): hot copies refill from ${this.#cache ? 'PostgreSQL' : 'nothing, Redis being the only store'}; ` +
          `writes pending only in Redis are lost unless this process still holds them (it holds ${this.#journal.size})`,
      );
    }
    this.#redisRunId = runId;
  }

  // ---- plumbing

  async #startRedis(): Promise<void> {
    const redis = this.#redis;
    if (!redis) return;
    await redis.start();
    if (redis.up) await this.#checkRestart(redis.adapter).catch(() => {});
    // ioredis reconnects by itself, so a restart may happen without the breaker ever seeing a failure.
    redis.adapter.onReady(() => void this.#checkRestart(redis.adapter).catch(() => {}));
  }

  /**
   * Runs a call once the tiers have started, within one time budget (the slowest tier's deadline)
   * however many tiers it meets, and tracks it so close() can wait for it.
   */
  async #run<T>(operation: string, work: (deadline: number) => Promise<T>): Promise<T> {
    this.#assertOpen();
    if (!this.#ready) await this.#started;
    const started = performance.now();
    this.#inflight++;
    let failed = true;
    try {
      const result = await work(Date.now() + this.#budgetMs);
      failed = false;
      return result;
    } finally {
      this.#stats.time(operation, performance.now() - started, failed);
      if (--this.#inflight === 0) this.#idle?.();
    }
  }

  /** Resolves when no call is in flight. */
  #settled(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#idle;
      this.#idle = () => {
        previous?.();
        this.#idle = undefined;
        resolve();
      };
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError(ErrorCode.STORE_CLOSED, 'the store is closed');
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#syncer?.stop();
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(0, deadline - Date.now());
    await within(left(), this.#started);
    await within(left(), this.#settled());
    // A tier that just came back may not have been probed yet: look once more before giving up on it.
    await within(left(), Promise.all([this.#redis?.probe(), this.#postgres?.probe()]));
    if (this.#syncer && (this.#journal.size > 0 || this.#syncer.running || this.#opts.writeMode === 'write-behind')) {
      const final = this.#syncer.run().then((result) => result && this.emit('syncComplete', result));
      await within(left(), final).catch((error: unknown) => this.#log.warn(`final sync failed: ${(error as Error).message}`));
    }
    if (this.#journal.size > 0 && this.#cache?.up) {
      // PostgreSQL is still away: Redis's journal keeps these for the next process to move.
      const ops = this.#journal.peek(this.#journal.size);
      await within(left(), this.#cache.call((c) => c.write(ops, { pending: true })).then(() => this.#journal.remove(ops))).catch(() => {});
    }
    if (this.#journal.size > 0) {
      const where = this.#cache ? 'PostgreSQL or Redis' : (this.#durable?.name ?? 'a server');
      this.#log.error(`${this.#journal.size} acknowledged writes never reached ${where} before close and are lost`);
    }
    for (const tier of [this.#redis, this.#postgres]) tier?.stop();
    await Promise.allSettled([this.#redis?.adapter.close(), this.#postgres?.adapter.close()]);
  }

  #describe(options: TieredStoreOptions): string {
    const parts: string[] = [];
    if (options.redis) parts.push(`redis ${options.redis.describe()} (${options.postgres ? 'cache' : 'system of record, nothing expires'})`);
    if (options.postgres) parts.push(`postgres ${options.postgres.describe()} (schema ${options.postgres.schema})`);
    parts.push(this.#durable ? 'memory (fallback)' : 'memory (only tier: data is lost on restart)');
    return `tiers: ${parts.join(' -> ')}; ${this.#durable ? this.#opts.writeMode : 'in memory'}`;
  }
}

/** The earlier message's id when a single-op write repeated its idempotency key. */
function repeated(outcome: void | readonly WriteOutcome[] | undefined): string | undefined {
  const first = outcome?.[0];
  return typeof first === 'string' ? first : undefined;
}

/** A user record with pending ops laid over it (last writer wins by op id). */
function overlay(record: UserRecord, ops: readonly Op[]): UserRecord {
  if (ops.length === 0) return record;
  const state = { ...emptyUserState(), phone: { ...record.phone }, booking: { ...record.booking }, subscribed: { ...record.subscribed } };
  for (const op of ops) applyOp(state, op);
  return { phone: state.phone, booking: state.booking, subscribed: state.subscribed };
}

function within<T>(ms: number, work: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

