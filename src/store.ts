import { EventEmitter } from 'node:events';
import type { DeadLetterRecord, StorageAdapter } from './adapters/contract.js';
import { MemoryAdapter } from './adapters/memory.js';
import { Batcher } from './routing/batcher.js';
import { Breaker } from './routing/breaker.js';
import type { CacheAdapter } from './cache/contract.js';
import { fromEnv, type FromEnvOptions } from './env.js';
import { ErrorCode, StoreError, UnavailableError } from './errors.js';
import { idTime, nextId } from './model/ids.js';
import { Journal } from './routing/journal.js';
import { createLogger, Secrets, type StoreLogger } from './logger.js';
import { after, applyEdit, fromMessage, toMessage, type AppendOp, type EditOp, type Op } from './model/ops.js';
import { Draft } from './draft.js';
import { withinBudget } from './model/budget.js';
import { MAX_HISTORY_LIMIT, resolveOptions, type ResolvedOptions, type TieredStoreOptions } from './options.js';
import { Reads } from './routing/reads.js';
import { Stats, type StoreStats } from './stats.js';
import { HotCache, RestartWatch } from './cache/hot-cache.js';
import { L1 } from './cache/l1.js';
import type { InvalidationFeed } from './cache/invalidation-feed.js';
import { Syncer } from './routing/syncer.js';
import { DraftSweeper } from './routing/draft-sweeper.js';
import type {
  BookingData,
  Health,
  JsonObject,
  Message,
  Role,
  SyncResult,
  ThreadExport,
  ThreadInfo,
  ThreadPage,
  TierState,
  UserExport,
  UserId,
} from './types.js';
import {
  checkBooking,
  checkContent,
  checkIdempotencyKey,
  checkLimit,
  checkMaxTokens,
  checkMessageId,
  checkMeta,
  checkRole,
  checkThread,
  checkTitle,
  countTokensOf,
  normalizePhone,
  userKey,
} from './model/validate.js';
import { Writes } from './routing/writes.js';
import { Summarizer, type SummaryLeases } from './routing/summarizer.js';
import { contextWithin, type Context } from './model/context.js';
import { KeyRing } from './crypto/keys.js';
import { SealedAdapter } from './crypto/sealed.js';
import { Rewrapper } from './crypto/rotation.js';

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
  /** The op's kind, or 'unreadable' for a journal entry that could not be decoded. */
  kind: Op['kind'] | 'unreadable';
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
   * message. Kept forever in PostgreSQL, a day (the last 1000 per user) in Redis, for the process in RAM,
   * until `clearHistory` or `deleteUser` removes the message it names (a re-delivery after that is a new message).
   */
  idempotencyKey?: string | number;
  /** The conversation (1-128 characters of [A-Za-z0-9_-]). @default 'main' */
  thread?: string;
}

export interface HistoryOptions {
  /**
   * How many of the newest messages. @default historyLimit; with `maxTokens`, no limit but the
   * budget's (at most 10,000 messages)
   */
  limit?: number;
  /** @default 'main' */
  thread?: string;
  /**
   * A budget read: the newest messages whose `tokens` total at most this (a positive integer), for
   * a model's context. Drafts still streaming are left out, an assistant message and the tool
   * results after it are kept whole or not at all, and the window never starts with a tool result.
   */
  maxTokens?: number;
}

export interface ListThreadsOptions {
  /** Threads per page (1-1000). @default 20 */
  limit?: number;
  /** The `cursor` of the previous page. */
  cursor?: string | null;
}

export interface MessagePatch {
  content?: string;
  /** Replaces the meta; null removes it. */
  meta?: JsonObject | null;
}

const MAX_DEAD_LETTERS = 1000;
/** exportUser: threads per listThreads page, and threads read at once. */
const EXPORT_PAGE = 1000;
const EXPORT_PARALLEL = 4;
const LEFTOVERS_AFTER_MS = 1000;
const OPERATION_OF: Record<Op['kind'], string> = {
  append: 'addMemory',
  clear: 'clearHistory',
  edit: 'updateMessage',
  cut: 'deleteMessage',
  title: 'setThreadTitle',
  dropThread: 'deleteThread',
  phone: 'setUserPhone',
  booking: 'setBookingData',
  subscribe: 'setEmailSubscriber',
  delete: 'deleteUser',
  summary: 'summarize',
};

/** Stores that leave other processes' pending writes where they are (see {@link leaveLeftovers}). */
const LEAVING_LEFTOVERS = new WeakSet<TieredStore>();

/**
 * @internal For the CLI's read-only commands (export, inspect): the store does not move the
 * writes other processes left pending soon after it starts, so looking changes nothing.
 */
export function leaveLeftovers(store: TieredStore): void {
  LEAVING_LEFTOVERS.add(store);
}

/**
 * Conversation memory over Redis (fast), PostgreSQL (durable) and RAM (fallback). Every method
 * validates first and writes nothing on bad input; a tier that fails is skipped until it is back.
 */
export class TieredStore extends EventEmitter<StoreEvents> {
  readonly #opts: ResolvedOptions;
  readonly #log: StoreLogger;
  readonly #redis: Breaker<CacheAdapter> | undefined;
  readonly #postgres: Breaker<StorageAdapter> | undefined;
  /** PostgreSQL, else Redis, else nothing (memory only). */
  readonly #durable: Breaker<StorageAdapter> | undefined;
  /** Redis when PostgreSQL is there too: hot copies and the pending journal. */
  readonly #cache: HotCache | undefined;
  /** Redis as the only store: its restarts are noticed all the same. */
  readonly #restarts: RestartWatch | undefined;
  readonly #journal: Journal;
  /** The in-process tier (when on) and the Redis feed that keeps it coherent (once Redis started). */
  readonly #l1: L1 | undefined;
  #feed: InvalidationFeed | undefined;
  /** How long one store call may take: the slowest tier's deadline. */
  readonly #budgetMs: number;
  readonly #reads: Reads;
  readonly #writes: Writes;
  readonly #syncer: Syncer | undefined;
  /** Rolling summaries, when a `summarize` hook is set. */
  readonly #summarizer: Summarizer | undefined;
  readonly #started: Promise<void>;
  readonly #stats = new Stats();
  readonly #appends: Batcher<AppendOp, string | undefined>;
  /** Drafts this process is streaming (the syncer leaves them alone). */
  readonly #drafts = new Map<string, Draft>();
  /** Users this process appended to since the last sync pass, for retention.keepLast. */
  readonly #written = new Set<string>();
  /** Encryption at rest: the master keys, and the pass that re-wraps data keys after a rotation. */
  readonly #ring: KeyRing | undefined;
  readonly #rewrapper: Rewrapper | undefined;
  /** Deleted users whose data keys in Redis are still to be destroyed (Redis was away when the delete landed), with the delete's id. */
  readonly #shredLater = new Map<string, string>();
  #deadLetters: DeadLetter[] = [];
  #inflight = 0;
  #idle: (() => void) | undefined;
  #ready = false;
  #closed: Promise<void> | undefined;

  constructor(options: TieredStoreOptions = {}) {
    super();
    this.#opts = resolveOptions(options);
    const secrets = new Secrets();
    for (const adapter of [options.redis, options.postgres]) for (const s of adapter?.secrets?.() ?? []) secrets.add(s);
    // Encryption at rest: each server tier is sealed by a decorator; RAM and its journal stay plaintext.
    const ring = options.encryption === undefined ? undefined : new KeyRing(options.encryption);
    for (const form of ring?.secretForms() ?? []) secrets.add(form);
    this.#ring = ring;
    const redisAdapter = ring && options.redis ? new SealedAdapter(options.redis, ring) : options.redis;
    const postgresAdapter = ring && options.postgres ? new SealedAdapter(options.postgres, ring) : options.postgres;
    this.#log = createLogger(options.logger, secrets);
    const memory = options.memory ?? new MemoryAdapter();
    const journal = new Journal(this.#opts.journalLimit, memory.maxBytes);
    this.#journal = journal;

    const { historyLimit, ttlMs } = this.#opts;
    const config = { historyLimit, ttlMs, logger: this.#log, secrets };
    const hooks = (tier: string) => ({
      probeIntervalMs: this.#opts.probeIntervalMs,
      logger: this.#log.child({ tier }),
      secrets,
      recover: (tier: Breaker) => this.#recover(tier),
      onDown: (tier: Breaker, error: Error) => {
        if (tier === this.#redis) this.#l1Serving();
        this.emit('tierDown', { tier: tier.name, error });
      },
      onError: (tier: Breaker) => this.#stats.count(tier.name, 'errors'),
      onUp: (tier: Breaker, downForMs: number) => this.#onUp(tier, downForMs),
    });
    memory.bind({ ...config, role: 'durable' });
    redisAdapter?.bind({ ...config, role: postgresAdapter ? 'cache' : 'durable' });
    postgresAdapter?.bind({ ...config, role: 'durable' });
    const redis = redisAdapter && new Breaker<CacheAdapter>(redisAdapter, hooks('redis'));
    const postgres = postgresAdapter && new Breaker<StorageAdapter>(postgresAdapter, hooks('postgres'));
    this.#redis = redis;
    this.#postgres = postgres;
    this.#durable = postgres ?? redis;
    this.#cache = redis && postgres ? new HotCache(redis, this.#stats, this.#log, () => journal.size) : undefined;
    this.#restarts =
      redis && !postgres
        ? new RestartWatch(redis.adapter, () =>
            this.#log.warn('redis restarted (its run id changed): it was the only store, so what it held without persistence is gone'),
          )
        : undefined;
    this.#budgetMs = Math.max(redis?.adapter.timeoutMs ?? 0, postgres?.adapter.timeoutMs ?? 0);
    // Only with a feed to keep it coherent: a cache adapter that can name changed keys.
    const l1 = this.#opts.l1;
    this.#l1 = l1 && redisAdapter?.invalidations ? new L1(l1.maxBytes, historyLimit) : undefined;
    if (options.l1 && options.redis && !this.#l1) {
      this.#log.warn('l1 is off: its cache adapter cannot report changed keys (see docs/in-process-tier.md)');
    }
    const route = { cache: this.#cache, durable: this.#durable, memory, journal, stats: this.#stats, l1: this.#l1 };
    this.#reads = new Reads({ ...route, historyLimit, writeMode: this.#opts.writeMode });
    this.#writes = new Writes({ ...route, writeMode: this.#opts.writeMode, budgetMs: this.#budgetMs });
    this.#appends = new Batcher((ops) => this.#writes.appends(ops));
    this.#started = Promise.all([this.#startRedis(), postgres?.start()]).then(() => {
      this.#ready = true;
      this.#drainLeftovers();
    });
    const durable = this.#durable;
    const sweeper = new DraftSweeper({
      durable: durable as Breaker<StorageAdapter>,
      redis,
      reads: this.#reads,
      writes: this.#writes,
      live: (id) => this.#drafts.has(id),
      count: (m) => {
        try {
          return this.#countTokens(m.role, m.content, m.meta, m.thread, m.id);
        } catch {
          return undefined;
        }
      },
      timeoutMs: this.#opts.draftTimeoutMs,
      budgetMs: this.#budgetMs,
    });
    this.#syncer =
      durable &&
      new Syncer({
        ready: this.#started,
        cache: this.#cache,
        durable,
        journal,
        memory,
        batchSize: this.#opts.syncBatchSize,
        logger: this.#log,
        flushed: (users) => this.#cache?.invalidate(users, true) ?? Promise.resolve(),
        deadLetter: (letter, error) => this.#deadLetter(letter, error),
        retention: this.#opts.retention,
        sweepDrafts: () => sweeper.sweep(),
        encrypted: ring !== undefined,
        takeWrittenUsers: () => {
          const users = [...this.#written];
          this.#written.clear();
          return users;
        },
      });

    const hook = this.#opts.summarize;
    this.#summarizer =
      hook &&
      new Summarizer({
        hook,
        afterTokens: this.#opts.summarizeAfterTokens,
        timeoutMs: this.#opts.summarizeTimeoutMs,
        reads: this.#reads,
        writes: this.#writes,
        budgetMs: this.#budgetMs,
        leases: this.#summaryLeases(),
        logger: this.#log,
        ready: this.#started,
      });

    // A delete that reaches PostgreSQL without passing through Redis still destroys Redis's keys of the user.
    // Redis away: done when it is back (from this process; see #shredInRedis).
    if (postgresAdapter instanceof SealedAdapter && redisAdapter instanceof SealedAdapter && redis) {
      postgresAdapter.onShred = (user, upTo) => this.#shredInRedis(redis, redisAdapter, user, upTo);
    }
    this.#rewrapper =
      ring &&
      new Rewrapper(
        [redis, postgres].flatMap((tier) => (tier?.adapter instanceof SealedAdapter ? [{ tier, keys: tier.adapter.keys.store }] : [])),
        ring,
        this.#log,
      );

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
    const thread = checkThread(options.thread);
    const tokens = this.#countTokens(checkedRole, checked, meta, thread);
    const id = nextId();
    const op: AppendOp = { kind: 'append', user, id, thread, role: checkedRole, content: checked, createdAt: idTime(id), tokens };
    if (meta !== undefined) op.meta = meta;
    if (key !== undefined) op.key = key;
    const earlier = await this.#write(op);
    const message = toMessage(op);
    return earlier === undefined ? message : { ...message, id: earlier, createdAt: new Date(idTime(earlier)) };
  }

  /** The newest `limit` messages (default `historyLimit`) of a thread (default 'main'), oldest first. */
  async getHistory(userId: UserId, options: HistoryOptions = {}): Promise<Message[]> {
    const user = userKey(userId);
    const given = options.limit === undefined ? undefined : checkLimit(options.limit, MAX_HISTORY_LIMIT);
    const thread = checkThread(options.thread);
    if (options.maxTokens !== undefined) {
      const maxTokens = checkMaxTokens(options.maxTokens);
      return this.#run('getHistory', (deadline) => this.#budgetHistory(user, thread, maxTokens, given, deadline));
    }
    const limit = given ?? this.#opts.historyLimit;
    return this.#run('getHistory', (deadline) => this.#reads.history(user, thread, limit, deadline));
  }

  /**
   * A budget read. It reads what a plain read of `limit` (default historyLimit) reads, from the hot
   * copy when it can, and keeps the newest messages that fit. Only when that read came back full and
   * everything in it fits (the budget may want older messages) does it read further back, from
   * PostgreSQL, sized by the messages' average count, until the budget, the limit, the thread or
   * MAX_HISTORY_LIMIT stops it.
   */
  async #budgetHistory(user: string, thread: string, maxTokens: number, limit: number | undefined, deadline: number): Promise<Message[]> {
    const most = limit ?? MAX_HISTORY_LIMIT;
    let want = limit ?? this.#opts.historyLimit;
    for (;;) {
      const read = await this.#reads.history(user, thread, want, deadline);
      const picked = withinBudget(read, maxTokens, most);
      if (read.length < want || want >= most || picked.length >= most) return picked;
      let total = 0;
      let counted = 0;
      for (const m of read) {
        if (m.status === 'streaming') continue;
        total += m.tokens;
        counted++;
      }
      if (total > maxTokens) return picked; // the budget, not the read, ended the window
      const average = Math.max(1, total / Math.max(1, counted));
      want = Math.min(most, Math.max(want * 2, Math.ceil(((maxTokens / average) * 5) / 4) + (read.length - counted)));
    }
  }

  /** Removes every message of a thread (default 'main'); its title stays. */
  async clearHistory(userId: UserId, options: { thread?: string } = {}): Promise<void> {
    const user = userKey(userId);
    await this.#write({ kind: 'clear', user, id: nextId(), thread: checkThread(options.thread) });
  }

  // ---- context and summaries

  /**
   * What fits the model: the thread's summary (null when there is none) and the newest messages it
   * does not cover, within `maxTokens` with the summary's own tokens (tool calls kept with their
   * results, drafts still streaming left out). A summary larger than maxTokens by itself is left out.
   */
  async getContext(userId: UserId, options: { thread?: string; maxTokens: number }): Promise<Context> {
    const user = userKey(userId);
    const thread = checkThread(options?.thread);
    const maxTokens = options?.maxTokens;
    if (typeof maxTokens !== 'number' || !Number.isSafeInteger(maxTokens) || maxTokens <= 0) {
      throw new StoreError(ErrorCode.INVALID_OPTION, `maxTokens must be a positive integer, got ${String(maxTokens)}`);
    }
    return this.#run('getContext', async (deadline) => {
      const summary = await this.#reads.summary(user, thread, deadline);
      const covers = summary?.covers ?? '';
      // The hot copy first; more only while every message read is newer than the summary and still fits.
      for (let limit = this.#opts.historyLimit; ; limit = Math.min(limit * 4, MAX_HISTORY_LIMIT)) {
        const history = await this.#reads.history(user, thread, limit, deadline);
        const after = history.filter((m) => m.id > covers);
        const context = contextWithin(summary?.text ?? null, after, maxTokens);
        const complete = after.length < history.length || history.length < limit || limit >= MAX_HISTORY_LIMIT;
        if (complete || context.messages.length < after.filter((m) => m.status !== 'streaming').length) return context;
      }
    });
  }

  /**
   * Runs the summarizer for a thread now (after another process's run of it, if one is under way)
   * and resolves the new summary; null when there is nothing to summarise or no `summarize` hook.
   * Rejects with the hook's error when it fails (background runs retry by themselves).
   */
  async summarizeNow(userId: UserId, options: { thread?: string } = {}): Promise<string | null> {
    const user = userKey(userId);
    const thread = checkThread(options?.thread);
    const summarizer = this.#summarizer;
    if (!summarizer) return null;
    return this.#run('summarizeNow', () => summarizer.now(user, thread));
  }

  /** The thread's summary text, or null (pending writes laid over the durable tier's): for exports. */
  async #summary(user: string, thread: string): Promise<string | null> {
    return this.#run('getSummary', async (deadline) => (await this.#reads.summary(user, thread, deadline))?.text ?? null);
  }

  // ---- threads

  /** The user's threads, most recently active first, `limit` per page. */
  async listThreads(userId: UserId, options: ListThreadsOptions = {}): Promise<ThreadPage> {
    const user = userKey(userId);
    const limit = options.limit === undefined ? 20 : checkLimit(options.limit, 1000);
    const cursor = options.cursor ?? null;
    if (cursor !== null && (typeof cursor !== 'string' || cursor.length > 512)) {
      throw new StoreError(ErrorCode.INVALID_OPTION, 'cursor must be the string a previous listThreads returned');
    }
    if (limit === 0) return { threads: [], cursor: null };
    return this.#run('listThreads', (deadline) => this.#reads.threads(user, limit, cursor, deadline));
  }

  /** Names a thread (at most 256 characters); null removes the title. */
  async setThreadTitle(userId: UserId, thread: string, title: string | null): Promise<void> {
    const user = userKey(userId);
    const op: Op = { kind: 'title', user, id: nextId(), thread: checkThread(thread), title: checkTitle(title) };
    await this.#write(op);
  }

  /** Erases a thread: its messages and title, in every tier; a replay never brings them back. */
  async deleteThread(userId: UserId, thread: string): Promise<void> {
    const user = userKey(userId);
    await this.#write({ kind: 'dropThread', user, id: nextId(), thread: checkThread(thread) });
  }

  // ---- messages by id

  /** The message with this id (any thread), or null. */
  async getMessage(userId: UserId, messageId: string): Promise<Message | null> {
    const user = userKey(userId);
    const id = checkMessageId(messageId);
    return (await this.#run('getMessage', (deadline) => this.#reads.message(user, id, deadline))).message;
  }

  /** Replaces a message's content and/or meta; resolves the updated message, or null when there is none. */
  async updateMessage(userId: UserId, messageId: string, patch: MessagePatch): Promise<Message | null> {
    const user = userKey(userId);
    const id = checkMessageId(messageId);
    if (patch === null || typeof patch !== 'object' || (patch.content === undefined && patch.meta === undefined)) {
      throw new StoreError(ErrorCode.INVALID_OPTION, 'updateMessage needs { content } and/or { meta }');
    }
    const content = patch.content === undefined ? undefined : checkContent(patch.content, this.#opts.limits);
    const meta = patch.meta === undefined || patch.meta === null ? patch.meta : checkMeta(patch.meta, this.#opts.limits);
    return this.#run('updateMessage', async (deadline) => {
      const found = await this.#reads.message(user, id, deadline);
      if (!found.message) return null;
      const current = found.message;
      const op: EditOp = { kind: 'edit', user, id: nextId(), thread: current.thread, target: id, content: content ?? current.content };
      const nextMeta = meta === undefined ? current.meta : (meta ?? undefined);
      if (nextMeta !== undefined) op.meta = nextMeta;
      op.tokens = this.#countTokens(current.role, op.content, nextMeta, current.thread, id);
      if (current.status !== undefined) op.status = current.status;
      op.updatedAt = idTime(op.id);
      await this.#writes.route(op, deadline, found.pending);
      this.#noteWrite(op);
      const stored = fromMessage(user, current);
      applyEdit(stored, op);
      return toMessage(stored);
    });
  }

  /** Deletes one message for good; resolves whether it existed. */
  async deleteMessage(userId: UserId, messageId: string): Promise<boolean> {
    const user = userKey(userId);
    const id = checkMessageId(messageId);
    return this.#run('deleteMessage', async (deadline) => {
      const found = await this.#reads.message(user, id, deadline);
      if (!found.message) return false;
      const cut: Op = { kind: 'cut', user, id: nextId(), thread: found.message.thread, from: id, to: id };
      await this.#writes.route(cut, deadline, found.pending);
      this.#noteWrite(cut);
      return true;
    });
  }

  /**
   * Removes every message of the message's thread newer than it (it stays): edit-and-regenerate.
   * Resolves how many went (0 when the message does not exist).
   */
  async truncateAfter(userId: UserId, messageId: string): Promise<number> {
    const user = userKey(userId);
    const id = checkMessageId(messageId);
    return this.#run('truncateAfter', async (deadline) => {
      const found = await this.#reads.message(user, id, deadline);
      if (!found.message) return 0;
      const thread = found.message.thread;
      const cutId = nextId();
      const newer = (await this.#reads.history(user, thread, MAX_HISTORY_LIMIT, deadline)).filter((m) => m.id > id && m.id <= cutId);
      const cut: Op = { kind: 'cut', user, id: cutId, thread, from: after(id), to: cutId };
      await this.#writes.route(cut, deadline, found.pending);
      this.#noteWrite(cut);
      return newer.length;
    });
  }

  // ---- streaming drafts

  /**
   * Starts a streamed answer: a message with status 'streaming', visible in reads at once. Feed it
   * with `draft.update(textSoFar)`; end it with `finish()` or `abort()`.
   */
  async startDraft(userId: UserId, role: Role, options: { thread?: string; meta?: JsonObject } = {}): Promise<Draft> {
    const user = userKey(userId);
    const checkedRole = checkRole(role);
    const thread = checkThread(options.thread);
    const meta = options.meta === undefined ? undefined : checkMeta(options.meta, this.#opts.limits);
    const tokens = this.#countTokens(checkedRole, '', meta, thread);
    const id = nextId();
    const op: AppendOp = { kind: 'append', user, id, thread, role: checkedRole, content: '', createdAt: idTime(id), status: 'streaming', tokens };
    if (meta !== undefined) op.meta = meta;
    await this.#run('startDraft', (deadline) => this.#writes.route(op, deadline));
    const draft = new Draft(
      {
        flushMs: this.#opts.draftFlushMs,
        check: (text, m) => ({ content: checkContent(text, this.#opts.limits), meta: m === undefined ? undefined : checkMeta(m, this.#opts.limits) }),
        count: (content, m) => this.#countTokens(checkedRole, content, m, thread, id),
        flush: (edit) => this.#flushDraft(edit),
        commit: async (edit) => {
          // Behind the draft's start if that is still pending, like any change of a message.
          await this.#run('finishDraft', async (deadline) => this.#writes.route(edit, deadline, await this.#reads.hasPending(user, deadline)));
          // A finished draft counts toward the thread's summary like an appended message.
          if (edit.status === undefined) this.#summarizer?.appended(user, thread, edit);
        },
        closed: (draftId) => this.#drafts.delete(draftId),
      },
      op,
    );
    this.#drafts.set(id, draft);
    return draft;
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
    return (await this.#run('getUserPhone', (deadline) => this.#reads.user(user, deadline, false, true))).phone.value;
  }

  /** Stores a JSON object (at most `limits.bookingBytes` serialised); `null` removes it. */
  async setBookingData(userId: UserId, data: BookingData | null): Promise<void> {
    const user = userKey(userId);
    const booking = data === null ? null : checkBooking(data, this.#opts.limits);
    await this.#write({ kind: 'booking', user, id: nextId(), booking });
  }

  async getBookingData(userId: UserId): Promise<BookingData | null> {
    const user = userKey(userId);
    return (await this.#run('getBookingData', (deadline) => this.#reads.user(user, deadline, false, true))).booking.value;
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
    return this.#run('isEmailSubscriber', (deadline) => this.#reads.isSubscriber(user, deadline));
  }

  /** Every subscriber's user id as a string, in no particular order. */
  async getEmailSubscribers(): Promise<string[]> {
    return this.#run('getEmailSubscribers', (deadline) => this.#reads.subscribers(deadline));
  }

  /** Erases the user from every tier, pending writes included; a later replay never brings it back. */
  async deleteUser(userId: UserId): Promise<void> {
    await this.#write({ kind: 'delete', user: userKey(userId), id: nextId() });
  }

  /**
   * Everything the store holds for the user: phone, booking, subscription and every thread (most
   * recently active first) with all of its messages, oldest first, the writes still pending (in
   * Redis's journal or this process's) laid over what PostgreSQL has. Every configured server
   * must answer: with Redis or PostgreSQL unreachable it throws `STORE_UNAVAILABLE` rather than
   * return part of the user's data as if it were all of it.
   */
  async exportUser(userId: UserId): Promise<UserExport> {
    const user = userKey(userId);
    return this.#run('exportUser', async () => {
      for (const tier of [this.#redis, this.#postgres]) {
        if (tier && !tier.up)
          throw new UnavailableError(ErrorCode.STORE_UNAVAILABLE, `exportUser: ${tier.name} is unreachable, so the export could not be complete`);
      }
      // One deadline per read: an export of many threads makes many calls.
      const deadline = () => Date.now() + this.#budgetMs;
      const infos: ThreadInfo[] = [];
      let cursor: string | null = null;
      do {
        const page: ThreadPage = await this.#reads.threads(user, EXPORT_PAGE, cursor, deadline(), true);
        infos.push(...page.threads);
        cursor = page.cursor;
      } while (cursor !== null);
      const threads: ThreadExport[] = new Array(infos.length);
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < infos.length; i = next++) {
          const info = infos[i] as ThreadInfo;
          const [messages, summary] = await Promise.all([this.#allMessages(user, info, deadline), this.#summary(user, info.id)]);
          threads[i] = { id: info.id, title: info.title, summary, messages };
        }
      };
      const [record] = await Promise.all([
        this.#reads.user(user, deadline(), true),
        ...Array.from({ length: Math.min(EXPORT_PARALLEL, infos.length) }, worker),
      ]);
      return {
        userId: user,
        exportedAt: new Date(),
        phone: record.phone.value,
        booking: record.booking.value,
        subscribed: record.subscribed.value,
        threads,
      };
    });
  }

  /** Every message of a thread: read with a limit above its count, again with a larger one if that filled it. */
  async #allMessages(user: string, info: ThreadInfo, deadline: () => number): Promise<Message[]> {
    let limit = Math.max(info.messages + 100, this.#opts.historyLimit + 1);
    for (;;) {
      const messages = await this.#reads.history(user, info.id, limit, deadline(), true);
      if (messages.length < limit) return messages;
      limit *= 2;
    }
  }

  // ---- encryption at rest

  /**
   * Makes `keyId` (already in `encryption.keys`) the master key that wraps new data keys, at once,
   * then re-wraps the data keys Redis and PostgreSQL hold under it; resolves when the reachable
   * tiers are done (a tier that is away is done in the background once it is back). Data is never
   * rewritten, and everything stays readable while the old master key is configured. Idempotent:
   * call it again to resume a pass a restart cut short.
   */
  async rotateEncryptionKey(keyId: string): Promise<void> {
    this.#assertOpen();
    const ring = this.#ring;
    if (!ring) throw new StoreError(ErrorCode.INVALID_OPTION, 'rotateEncryptionKey: the store has no encryption option');
    ring.use(keyId);
    if (!this.#ready) await this.#started;
    await this.#rewrapper?.run();
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
    const state = (tier: Breaker | undefined): TierState => (tier ? (tier.up ? 'up' : 'down') : 'absent');
    return {
      redis: state(this.#redis),
      postgres: state(this.#postgres),
      memory: 'up',
      pending: this.#journal.size + (this.#cache?.pending ?? 0),
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
      l1: this.#l1?.stats() ?? L1.off(),
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

  // ---- plumbing

  /** The message's token count by `countTokens`, checked; `INVALID_TOKEN_COUNT` names the message by role, thread and id (never its content). */
  #countTokens(role: Role, content: string, meta: JsonObject | undefined, thread: string, id?: string): number {
    const what = `the ${role} message${id === undefined ? '' : ` ${id}`} of thread '${thread}'`;
    return countTokensOf(() => this.#opts.countTokens({ role, content, meta }), what);
  }

  /** Routes a write; resolves to the id of an earlier message when `op` repeated its idempotency key. */
  async #write(op: Op): Promise<string | undefined> {
    if (op.kind === 'append' && this.#opts.retention.keepLast !== undefined && this.#written.size < 100_000) this.#written.add(op.user);
    const earlier = await this.#run(OPERATION_OF[op.kind], (deadline) =>
      op.kind === 'append' && op.key === undefined ? this.#appends.add(op) : this.#writes.route(op, deadline),
    );
    this.#noteWrite(op, earlier);
    return earlier;
  }

  /** Tells the summarizer (in RAM, at once: a run it schedules is never on the caller's path). */
  #noteWrite(op: Op, earlier?: string): void {
    const summarizer = this.#summarizer;
    if (!summarizer) return;
    if (op.kind === 'append' && earlier === undefined) summarizer.appended(op.user, op.thread, op);
    else if (op.kind === 'edit' || op.kind === 'cut') summarizer.changed(op.user, op.thread);
    else if (op.kind === 'clear' || op.kind === 'dropThread') summarizer.erased(op.user, op.thread);
    else if (op.kind === 'delete') summarizer.erased(op.user);
  }

  /** Summary runs' leases: Redis's (either role), else PostgreSQL's; in this process only while that tier is away. */
  #summaryLeases(): SummaryLeases | undefined {
    const tier = this.#redis?.adapter.leaseSummary ? this.#redis : this.#postgres?.adapter.leaseSummary ? this.#postgres : undefined;
    if (!tier) return undefined;
    return {
      take: async (user, thread, token, ttlMs) =>
        !tier.up || (await tier.call((a) => a.leaseSummary?.(user, thread, token, ttlMs) ?? Promise.resolve(true)).catch(() => true)),
      give: async (user, thread, token) => {
        if (tier.up) await tier.call((a) => a.releaseSummary?.(user, thread, token) ?? Promise.resolve());
      },
    };
  }

  /** A draft's progress: Redis's copy (never journaled), else, with no server at all, RAM. */
  async #flushDraft(op: EditOp): Promise<void> {
    if (this.#cache) {
      try {
        if (this.#cache.up) await this.#cache.breaker.call((c) => c.write([op]));
      } finally {
        this.#l1?.wrote([op]);
      }
      return;
    }
    if (this.#postgres) return;
    await this.#run('updateDraft', (deadline) => this.#writes.route(op, deadline));
  }

  /** Before Redis serves again: see if it restarted, and drop every copy that missed writes while it was away. */
  async #recover(tier: Breaker): Promise<void> {
    if (tier !== this.#redis) return;
    if (this.#cache) await this.#cache.recover();
    else await this.#restarts?.check();
  }

  /** Destroys a deleted user's data keys in Redis; while Redis is away, remembers to when it is back (lost if this process dies first). */
  async #shredInRedis(redis: Breaker<CacheAdapter>, sealed: SealedAdapter, user: string, upTo: string): Promise<void> {
    if (redis.up) {
      const done = await redis
        .call(() => sealed.shred(user, upTo))
        .then(
          () => true,
          () => false,
        );
      if (done) {
        if ((this.#shredLater.get(user) ?? '') <= upTo) this.#shredLater.delete(user);
        return;
      }
    }
    if (this.#shredLater.size < 100_000 && (this.#shredLater.get(user) ?? '') < upTo) this.#shredLater.set(user, upTo);
  }

  #onUp(tier: Breaker, downForMs: number): void {
    if (tier === this.#redis) this.#l1Serving();
    this.emit('tierUp', { tier: tier.name, downForMs });
    const redis = this.#redis;
    if (tier === redis && this.#shredLater.size > 0 && redis.adapter instanceof SealedAdapter) {
      const sealed = redis.adapter;
      for (const [user, upTo] of this.#shredLater) void this.#shredInRedis(redis, sealed, user, upTo);
    }
    // What waited for PostgreSQL (here and in Redis's journal) moves now, without waiting for startSync.
    if (tier === this.#durable || (tier === this.#redis && this.#cache && this.#durable?.up)) {
      this.#syncer?.drain((error) => this.#syncFailed(error));
    }
  }

  /**
   * Writes another process left pending (it crashed, or closed while PostgreSQL was away) move
   * soon after start without startSync, unless a pass (syncNow, startSync) came first.
   */
  #drainLeftovers(): void {
    const cache = this.#cache;
    const syncer = this.#syncer;
    if (!cache || !syncer || LEAVING_LEFTOVERS.has(this)) return;
    setTimeout(async () => {
      if (LEAVING_LEFTOVERS.has(this)) return;
      if (syncer.passes > 0 || !cache.up || !this.#durable?.up) return;
      const pending = await cache.pendingCount().catch(() => 0);
      if (pending > 0 && syncer.passes === 0) syncer.drain((error) => this.#syncFailed(error));
    }, LEFTOVERS_AFTER_MS).unref();
  }

  #deadLetter(record: DeadLetterRecord, error: Error): void {
    const letter: DeadLetter = { userId: record.user, kind: record.kind, id: record.id, error, at: new Date() };
    this.#deadLetters.push(letter);
    if (this.#deadLetters.length > MAX_DEAD_LETTERS) this.#deadLetters.shift();
    this.#log.error(`postgres refused a ${record.kind} of user ${record.user} for good (${error.message}); set aside as a dead letter`);
    this.emit('deadLetter', letter);
    // Kept where other processes (and the doctor command) can see it.
    const durable = this.#durable;
    if (!durable?.adapter.recordDeadLetter) return;
    void durable
      .call((d) => d.recordDeadLetter?.(record) ?? Promise.resolve())
      .catch((e: unknown) => this.#log.warn(`could not record the dead letter in PostgreSQL: ${(e as Error).message}`));
  }

  #syncFailed(error: Error): void {
    this.#log.warn(`sync failed: ${error.message}`);
    this.emit('syncError', error);
  }

  /**
   * L1 serves only while its feed is live and Redis is up; any change drops every copy from
   * serving (the feed may have missed a message: a reconnect, a restart, an outage).
   */
  #l1Serving(): void {
    this.#l1?.setLive((this.#feed?.live ?? false) && (this.#redis?.up ?? false));
  }

  async #startRedis(): Promise<void> {
    const redis = this.#redis;
    if (!redis) return;
    const l1 = this.#l1;
    if (l1) {
      this.#feed = redis.adapter.invalidations?.({
        users: (users) => l1.invalidate(users),
        all: () => l1.dropAll(),
        live: () => this.#l1Serving(),
        refused: (error) => {
          l1.turnOff();
          this.#log.warn(`the in-process tier (L1) is off: redis refused client tracking (${error.message})`);
        },
      });
      const feed = this.#feed;
      if (feed) l1.gate(() => feed.recent);
    }
    await redis.start();
    // The first reads can be served from L1 (a subscription is a round trip or two); never long.
    if (redis.up) await this.#feed?.settled(redis.adapter.timeoutMs);
    if (redis.up) await (this.#cache ? this.#cache.checkRestart() : this.#restarts?.check())?.catch(() => {});
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
    const redis = this.#redis;
    const postgres = this.#postgres;
    const cache = this.#cache;
    const journal = this.#journal;
    this.#syncer?.halt();
    this.#rewrapper?.stop();
    const deadline = Date.now() + timeoutMs;
    // Summary runs are abandoned (a run cut short writes nothing; the next process reruns it).
    await this.#summarizer?.close(Math.min(timeoutMs / 2, 2000));
    const left = () => Math.max(0, deadline - Date.now());
    await within(left(), this.#started);
    await within(left(), this.#settled());
    // A tier that just came back may not have been probed yet: look once more before giving up on it.
    await within(left(), Promise.all([redis?.probe(), postgres?.probe()]));
    if (this.#syncer && (journal.size > 0 || this.#syncer.running || this.#opts.writeMode === 'write-behind')) {
      const final = this.#syncer.run().then((result) => result && this.emit('syncComplete', result));
      await within(left(), final).catch((error: unknown) => this.#log.warn(`final sync failed: ${(error as Error).message}`));
    }
    if (journal.size > 0 && cache?.up) {
      // PostgreSQL is still away: Redis's journal keeps these for the next process to move.
      const ops = journal.peek(journal.size);
      await within(
        left(),
        cache.journal(ops, left() + Date.now()).then(() => journal.remove(ops)),
      ).catch(() => {});
    }
    if (journal.size > 0) {
      const where = cache ? 'PostgreSQL or Redis' : (this.#durable?.name ?? 'a server');
      this.#log.error(`${journal.size} acknowledged writes never reached ${where} before close and are lost`);
    }
    for (const tier of [redis, postgres]) tier?.stop();
    await Promise.allSettled([this.#feed?.close(), redis?.adapter.close(), postgres?.adapter.close()]);
  }

  #describe(options: TieredStoreOptions): string {
    const parts: string[] = [];
    if (options.redis) parts.push(`redis ${options.redis.describe?.() ?? ''} (${options.postgres ? 'cache' : 'system of record, nothing expires'})`);
    if (options.postgres) parts.push(`postgres ${options.postgres.describe?.() ?? ''}`);
    parts.push(this.#durable ? 'memory (fallback)' : 'memory (only tier: data is lost on restart)');
    const l1 = this.#l1 ? `; L1 ${Math.round(this.#l1.maxBytes / 1024 / 1024)} MiB in process` : '';
    return `tiers: ${parts.join(' -> ')}${this.#durable ? `; ${this.#opts.writeMode}` : ''}${l1}`;
  }
}

function within<T>(ms: number, work: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
