import { isMiss, type CacheMiss, type HistoryRead, type UserRecord, type WriteOutcome } from '../adapters/contract.js';
import { isTierUnavailable, type Breaker } from '../routing/breaker.js';
import type { CacheAdapter, JournalEntry } from './contract.js';
import type { StoreLogger } from '../logger.js';
import type { Op } from '../model/ops.js';
import type { Stats } from '../stats.js';
import type { Message } from '../types.js';

const MAX_STALE_USERS = 100_000;
const WARN_EVERY_MS = 60_000;

/**
 * The one owner of the hot-cache protocol (Redis in front of PostgreSQL), which reads, writes and
 * the syncer ask instead of the adapter:
 * - a copy is only ever created whole, by a fill after a miss, at the version the miss saw;
 * - a write that found no copy moved the version; once such a write is durable, copies are dropped
 *   again, so a fill that read the durable tier before the commit cannot linger;
 * - a write the cache missed makes this process stop serving that user's copies ("stale") until
 *   they are dropped, which recovery does before the cache serves again;
 * - a server restart (new run id) is noticed and said once; the pending count restarts from zero;
 * - a cache failure is never the caller's error: reads fall back, writes go to the durable tier.
 */
export class HotCache {
  /** Entries journaled in the cache as this process last saw them. */
  #pending = 0;
  readonly #stale = new Set<string>();
  #staleSubscribers = false;
  #staleAll = false;
  readonly #restarts: RestartWatch;
  readonly #warnedAt = new Map<string, number>();

  /** `heldHere`: how many pending writes this process holds itself (they survive a restart of the cache). */
  constructor(
    readonly breaker: Breaker<CacheAdapter>,
    private readonly stats: Stats,
    private readonly log: StoreLogger,
    heldHere: () => number,
  ) {
    this.#restarts = new RestartWatch(breaker.adapter, () => {
      this.#pending = 0;
      log.warn(
        'redis restarted (its run id changed): hot copies refill from PostgreSQL; writes pending only in Redis are lost ' +
          `unless this process still holds them (it holds ${heldHere()})`,
      );
    });
  }

  get up(): boolean {
    return this.breaker.up;
  }

  get pending(): number {
    return this.#pending;
  }

  /** What a sync pass counted in the cache's pending index. */
  set pending(count: number) {
    this.#pending = count;
  }

  // ---- reads: undefined means "not from the cache" (down, stale or failed), counted as a fallback

  /** `forL1`: the result fills the in-process tier (a miss is likely, and the feed must report later changes to what it saw). */
  readHistory(user: string, thread: string, limit: number, deadline: number, forL1 = false): Promise<HistoryRead | CacheMiss | undefined> {
    return this.#read(this.usable(user), (c) => c.readHistory(user, limit, forL1 ? { thread, missLikely: true, track: true } : { thread }), deadline);
  }

  /** A message from the copies the cache holds (null: none holds it; undefined: not from the cache). */
  readMessage(user: string, id: string, deadline: number): Promise<Message | null | undefined> {
    return this.#read<Message | null, never>(this.usable(user), (c) => c.readMessage(user, id), deadline);
  }

  readUser(user: string, deadline: number, forL1 = false): Promise<UserRecord | CacheMiss | undefined> {
    return this.#read(this.usable(user), (c) => (forL1 ? c.readUser(user, { track: true }) : c.readUser(user)), deadline);
  }

  readSubscribers(deadline: number): Promise<string[] | CacheMiss | undefined> {
    return this.#read(this.usable(undefined), (c) => c.readSubscribers(), deadline);
  }

  /** A user's subscription from the cache: its copy must be fresh for both the user and the subscriber set. */
  isSubscriber(user: string, deadline: number): Promise<boolean | CacheMiss | undefined> {
    return this.#read(this.usable(undefined) && this.usable(user), (c) => c.isSubscriber(user), deadline);
  }

  /** Whether the cache may serve `user` (undefined: the subscriber set): up, and its copies did not miss a write. */
  usable(user: string | undefined): boolean {
    const fresh = user === undefined ? !this.#staleSubscribers : !this.#stale.has(user);
    return this.up && !this.#staleAll && fresh;
  }

  async #read<T, M extends CacheMiss | never = CacheMiss>(
    usable: boolean,
    read: (c: CacheAdapter) => Promise<T | M>,
    deadline: number,
  ): Promise<T | M | undefined> {
    if (!usable) {
      this.stats.count('redis', 'fallbacks');
      return undefined;
    }
    const result = await this.#try(this.breaker.call(read, deadline));
    this.stats.count('redis', result === undefined ? 'fallbacks' : isMiss(result) || result === null ? 'misses' : 'hits');
    return result;
  }

  /** Ops journaled in the cache for `user` that the durable tier may not have: the miss's, else read now ([] when that fails). */
  async pendingOps(user: string, miss: CacheMiss | undefined, deadline: number): Promise<Op[]> {
    if (miss) return miss.pending;
    if (!this.up) return [];
    return (await this.#try(this.breaker.call((c) => c.readPending(user), deadline))) ?? [];
  }

  // ---- fills: after a miss, never waited for

  fillHistory(user: string, thread: string, miss: CacheMiss, messages: readonly Message[]): void {
    this.#background(this.breaker.call((c) => c.fillHistory(user, miss.version, messages, thread)));
  }

  fillUser(user: string, miss: CacheMiss, record: UserRecord): void {
    this.#background(this.breaker.call((c) => c.fillUser(user, miss.version, record)));
  }

  fillSubscribers(miss: CacheMiss, users: readonly string[]): void {
    this.#background(this.breaker.call((c) => c.fillSubscribers(miss.version, users)));
  }

  // ---- writes

  /**
   * Journals ops in the cache atomically with their write (write-behind, or the durable tier is
   * down); rejects when the cache fails. `heldHere(op)`: also held by this process (not counted twice).
   */
  async journal(ops: readonly Op[], deadline: number, heldHere?: (op: Op) => boolean): Promise<WriteOutcome[]> {
    try {
      const outcomes = await this.breaker.call((c) => c.write(ops, { pending: true }), deadline);
      ops.forEach((op, i) => {
        if (typeof outcomes[i] !== 'string' && !heldHere?.(op)) this.#pending++;
      });
      return outcomes;
    } catch (error) {
      this.#failed(error);
      throw error;
    }
  }

  /** The cache's half of a write-through write (undefined: the cache is down and gets none). */
  writeThrough(ops: readonly Op[], deadline: number): Promise<WriteOutcome[]> | undefined {
    return this.up ? this.breaker.call((c) => c.write(ops), deadline) : undefined;
  }

  /**
   * After the durable tier committed `ops`: copies that missed them stop serving, and copies a
   * fill may have made before the commit are dropped. `cached` is how the cache's half ended (a
   * value of undefined: it got none); `repeats[i]`: the durable tier knew op i as a repeated
   * idempotency key.
   */
  async committed(ops: readonly Op[], cached: PromiseSettledResult<WriteOutcome[] | undefined>, repeats: readonly boolean[], deadline: number): Promise<void> {
    if (cached.status !== 'fulfilled' || cached.value === undefined) {
      for (const op of ops) this.markStale(op);
      return;
    }
    // No copy to change, or one kept a message the durable tier knew as a repeat: drop copies now.
    const outcomes = cached.value;
    const cold = ops.filter((_, i) => outcomes[i] === false || (repeats[i] === true && typeof outcomes[i] !== 'string'));
    if (cold.length === 0) return;
    const subscribers = cold.some(touchesSubscribers);
    await this.invalidate(new Set(cold.map((op) => op.user)), subscribers, deadline).catch(() => {
      for (const op of cold) this.markStale(op);
    });
  }

  /** `op` did not reach the cache: its copies of the user (and of the subscribers) must not serve. */
  markStale(op: Op): void {
    this.stats.count('redis', 'fallbacks');
    if (touchesSubscribers(op)) this.#staleSubscribers = true;
    if (this.#stale.size >= MAX_STALE_USERS) this.#staleAll = true;
    else this.#stale.add(op.user);
    // The cache may be up and merely have failed this write: drop its copies now rather than at recovery.
    if (this.up) void this.invalidate(new Set([op.user]), this.#staleSubscribers).catch(() => {});
  }

  /** Drops the cache's copies of `users`; a user stays stale until that succeeds. */
  async invalidate(users: Set<string>, subscribers: boolean, deadline?: number): Promise<void> {
    if (!this.up) {
      for (const user of users) this.#stale.add(user);
      if (subscribers) this.#staleSubscribers = true;
      return;
    }
    await this.breaker.call((c) => c.invalidate(users, subscribers), deadline);
    for (const user of users) this.#stale.delete(user);
    if (subscribers) this.#staleSubscribers = false;
  }

  // ---- the syncer's side

  pendingUsers(count: number): Promise<string[]> {
    return this.breaker.call((c) => c.pendingUsers(count));
  }

  readJournals(users: readonly string[], perUser: number): Promise<Map<string, JournalEntry[]>> {
    return this.breaker.call((c) => c.readJournals(users, perUser));
  }

  /** Acknowledges each user's entries (user -> entries). */
  async ack(acks: ReadonlyMap<string, readonly string[]>): Promise<void> {
    await this.breaker.call(async (c) => {
      if (c.ackMany) await c.ackMany(acks);
      else await Promise.all([...acks].map(([user, entries]) => c.ack(user, entries)));
    });
  }

  indexJournals(): Promise<number> {
    return this.breaker.call((c) => c.indexJournals());
  }

  pendingCount(): Promise<number> {
    return this.breaker.call((c) => c.pendingCount());
  }

  acquireLease(token: string, ttlMs: number): Promise<boolean> {
    return this.breaker.call((c) => c.acquireLease(token, ttlMs));
  }

  async releaseLease(token: string): Promise<void> {
    await this.breaker.call((c) => c.releaseLease(token)).catch(() => {});
  }

  // ---- lifecycle

  /** Before the cache serves again after an outage: notice a restart, and drop every copy that missed writes meanwhile. */
  async recover(): Promise<void> {
    const adapter = this.breaker.adapter;
    await this.checkRestart();
    if (this.#staleAll) await adapter.invalidateAll();
    else await adapter.invalidate(this.#stale, this.#staleSubscribers);
    this.#stale.clear();
    this.#staleAll = false;
    this.#staleSubscribers = false;
  }

  /** A server that restarted lost what it held (journals included, without persistence): said once per restart. */
  checkRestart(): Promise<void> {
    return this.#restarts.check();
  }

  /** A fill or an invalidation the caller does not wait for. */
  #background(work: Promise<unknown>): void {
    work.catch((error: unknown) => this.#failed(error));
  }

  async #try<T>(work: Promise<T>): Promise<T | undefined> {
    try {
      return await work;
    } catch (error) {
      this.#failed(error);
      return undefined;
    }
  }

  /**
   * An outage logs once, on the transition; a cache refusing requests while reachable (a full
   * memory, a misconfigured Cluster) would otherwise go unnoticed: warn once a minute per reason.
   */
  #failed(error: unknown): void {
    if (isTierUnavailable(error)) return;
    const reason = error instanceof Error ? error.message : String(error);
    const now = Date.now();
    if ((this.#warnedAt.get(reason) ?? 0) > now - WARN_EVERY_MS) return;
    if (this.#warnedAt.size > 100) this.#warnedAt.clear();
    this.#warnedAt.set(reason, now);
    this.log.warn(`redis refused a request, PostgreSQL served it instead: ${reason}`);
  }
}

/**
 * Notices that a server restarted by its run id: ioredis reconnects by itself, so a restart may
 * happen without the breaker ever seeing a failure. Also used for Redis as the only store.
 */
export class RestartWatch {
  #runId = '';

  constructor(
    private readonly adapter: Pick<CacheAdapter, 'runId' | 'onReady'>,
    private readonly onRestart: () => void,
  ) {
    adapter.onReady(() => void this.check().catch(() => {}));
  }

  async check(): Promise<void> {
    const runId = await this.adapter.runId();
    if (this.#runId && runId !== this.#runId) this.onRestart();
    this.#runId = runId;
  }
}

function touchesSubscribers(op: Op): boolean {
  return op.kind === 'subscribe' || op.kind === 'delete';
}
