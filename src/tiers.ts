import type { CacheMiss, StorageAdapter } from './adapter.js';
import { isMiss } from './adapter.js';
import type { MemoryAdapter } from './adapters/memory.js';
import type { PostgresAdapter } from './adapters/postgres.js';
import type { RedisAdapter } from './adapters/redis.js';
import type { Journal } from './journal.js';
import type { StoreLogger } from './logger.js';
import type { Op } from './ops.js';
import type { ResolvedOptions } from './options.js';
import type { Stats } from './stats.js';
import { isTierUnavailable, type Tier } from './tier.js';

const MAX_STALE_USERS = 100_000;

/**
 * One store's tiers and what its read and write paths share: which tier plays which part, which
 * Redis copies missed writes (and must be dropped before Redis serves them again), and how a
 * Redis failure that is not an outage gets noticed.
 */
export class Tiers {
  /** Redis when PostgreSQL is there too: hot copies and the pending journal. */
  readonly cache: Tier<RedisAdapter> | undefined;
  /** PostgreSQL, else Redis, else nothing (memory only). */
  readonly durable: Tier<StorageAdapter> | undefined;
  /** How long one store call may take: the slowest tier deadline. */
  readonly budgetMs: number;
  /** Writes journaled in Redis as this process last saw them. */
  pendingInCache = 0;
  /** Users whose Redis copies missed a write. */
  readonly #stale = new Set<string>();
  #staleSubscribers = false;
  #staleAll = false;
  readonly #warnedAt = new Map<string, number>();

  constructor(
    readonly redis: Tier<RedisAdapter> | undefined,
    readonly postgres: Tier<PostgresAdapter> | undefined,
    readonly memory: MemoryAdapter,
    readonly journal: Journal,
    readonly opts: ResolvedOptions,
    readonly log: StoreLogger,
    readonly stats: Stats,
  ) {
    this.cache = postgres ? redis : undefined;
    this.durable = postgres ?? redis;
    this.budgetMs = Math.max(redis?.adapter.timeoutMs ?? 0, postgres?.adapter.timeoutMs ?? 0);
  }

  /** Redis, if it may serve `user` (up, and its copies of that user did not miss a write). */
  usableCache(user: string | undefined): Tier<RedisAdapter> | undefined {
    const cache = this.cache;
    const fresh = user === undefined ? !this.#staleSubscribers : !this.#stale.has(user);
    if (cache?.up && !this.#staleAll && fresh) return cache;
    if (cache) this.stats.count(cache.name, 'fallbacks');
    return undefined;
  }

  /** Counts a cache read as a hit, a miss, or (undefined: it failed) a fallback. */
  counted<T>(read: T | CacheMiss | undefined): T | CacheMiss | undefined {
    this.stats.count('redis', read === undefined ? 'fallbacks' : isMiss(read) ? 'misses' : 'hits');
    return read;
  }

  /** A cache failure is never the caller's problem: a miss with nothing pending. */
  async try<T>(work: Promise<T>): Promise<T | undefined> {
    try {
      return await work;
    } catch (error) {
      this.cacheFailed(error);
      return undefined;
    }
  }

  /** For a durable read: an outage is `undefined` (the caller falls back), anything else is thrown. */
  readonly unlessDown = (error: unknown): undefined => {
    if (isTierUnavailable(error)) return undefined;
    throw error;
  };

  /** A refill the caller does not wait for. */
  fill(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.cacheFailed(error));
  }

  /**
   * An outage logs once, on the transition; Redis refusing requests while reachable (a full
   * memory, a misconfigured Cluster) would otherwise go unnoticed: warn once a minute per reason.
   */
  cacheFailed(error: unknown): void {
    if (isTierUnavailable(error)) return;
    const reason = error instanceof Error ? error.message : String(error);
    const now = Date.now();
    if ((this.#warnedAt.get(reason) ?? 0) > now - 60_000) return;
    if (this.#warnedAt.size > 100) this.#warnedAt.clear();
    this.#warnedAt.set(reason, now);
    this.log.warn(`redis refused a request, PostgreSQL served it instead: ${reason}`);
  }

  /** `op` did not reach Redis: its copies of the user (and of the subscribers) must not serve. */
  markStale(op: Op): void {
    this.stats.count('redis', 'fallbacks');
    if (op.kind === 'subscribe' || op.kind === 'delete') this.#staleSubscribers = true;
    if (this.#stale.size >= MAX_STALE_USERS) this.#staleAll = true;
    else this.#stale.add(op.user);
    // Redis may be up and merely have failed this write: drop its copies now rather than at recovery.
    if (this.cache?.up) void this.invalidate(new Set([op.user]), this.#staleSubscribers).catch(() => {});
  }

  /** After a durable write that Redis's copies may not reflect. */
  async invalidateAfter(op: Op, deadline: number): Promise<void> {
    const subscribers = op.kind === 'subscribe' || op.kind === 'delete';
    await this.invalidate(new Set([op.user]), subscribers, deadline).catch(() => this.markStale(op));
  }

  /** Drops Redis copies of `users`; a user stays stale until that succeeds. */
  async invalidate(users: Set<string>, subscribers: boolean, deadline?: number): Promise<void> {
    const cache = this.cache;
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
  async dropStaleCopies(redis: RedisAdapter): Promise<void> {
    if (this.#staleAll) await redis.invalidateAll();
    else await redis.invalidate(this.#stale, this.#staleSubscribers);
    this.#stale.clear();
    this.#staleAll = false;
    this.#staleSubscribers = false;
  }
}
