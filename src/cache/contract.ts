import type { CacheMiss, HistoryRead, HistoryReadOptions, ReadOptions, StorageAdapter, UserRecord, WriteOutcome } from '../adapters/contract.js';
import type { Op } from '../model/ops.js';
import type { Message } from '../types.js';
import type { InvalidationFeed, InvalidationListener } from './invalidation-feed.js';

/** One entry of a user's pending journal, as read for the syncer: the op, and the raw entry to acknowledge. */
export interface JournalEntry {
  op: Op | undefined;
  /** Why `op` is undefined: the entry could not be decoded (it is acknowledged and set aside). */
  error?: Error;
  raw: string;
}

/**
 * The cache role (Redis in front of PostgreSQL): hot copies guarded by versions, and the pending
 * journal with its index. `HotCache` owns the protocol built on it; `runAdapterContract`'s
 * `cache` and `journal` groups check these rules. Every method rejects only when the cache fails.
 * It extends the durable contract so one adapter can play either role (Redis alone is durable).
 */
export interface CacheAdapter extends StorageAdapter {
  /** The newest `limit` messages of a complete copy, or a miss carrying the version a fill must present and the user's journal. */
  readHistory(user: string, limit: number, options?: HistoryReadOptions): Promise<HistoryRead | CacheMiss>;
  /** Phone and booking of a held copy (subscription not included), or a miss like `readHistory`'s. */
  readUser(user: string, options?: ReadOptions): Promise<UserRecord | CacheMiss>;
  /** Every subscriber, when every shard holds a copy; otherwise a miss whose version names the missing shards. */
  readSubscribers(): Promise<string[] | CacheMiss>;
  /** Whether `user` is in a held subscriber copy, or a miss. */
  isSubscriber(user: string): Promise<boolean | CacheMiss>;
  /**
   * Applies ops to copies the cache holds (it never creates a copy: a copy is created whole, by a
   * fill). With `pending`, journals each op atomically with it and counts it in the pending index.
   * Resolves per op: whether it changed a held copy (false: none was there, and the version moved,
   * so no fill that read the durable tier before this write can install a copy), or the id of an
   * earlier message when the op repeated its idempotency key.
   */
  write(ops: readonly Op[], options?: { pending?: boolean }): Promise<WriteOutcome[]>;
  /** Installs a complete copy of the newest messages, only if the version is still the miss's and no copy exists. Resolves whether it did. */
  fillHistory(user: string, version: string, messages: readonly Message[], thread?: string): Promise<boolean>;
  /** Installs a copy of the user's fields under the same rule as `fillHistory`. */
  fillUser(user: string, version: string, record: UserRecord): Promise<boolean>;
  /** Installs the subscriber shards a `readSubscribers` miss named, under the same rule. */
  fillSubscribers(version: string, users: readonly string[]): Promise<boolean>;
  /** Drops the copies of `users` (and of the subscriber set) and moves their versions, so fills in flight fail. Journals stay. */
  invalidate(users: Iterable<string>, subscribers: boolean): Promise<void>;
  /** Drops every copy under the key prefix (never the journals). */
  invalidateAll(): Promise<void>;
  /** The user's pending journal, oldest first. */
  readPending(user: string): Promise<Op[]>;
  /** Up to `count` users the pending index points to, picked at random so concurrent syncers spread out. */
  pendingUsers(count: number): Promise<string[]>;
  /** The first `perUser` (0: all) journal entries of each user, to be acknowledged with `ack` once the durable tier has them. */
  readJournals(users: readonly string[], perUser: number): Promise<Map<string, JournalEntry[]>>;
  /**
   * Removes `entries` (only while they are at the journal's head) and uncounts them; resolves to
   * how many entries the user has left. No crash or concurrent write between its steps may leave
   * an entry the index does not point to.
   */
  ack(user: string, entries: readonly string[]): Promise<number>;
  /** Optional: `ack` of several users (user -> entries) in fewer round trips; resolves what each has left. */
  ackMany?(acks: ReadonlyMap<string, readonly string[]>): Promise<Map<string, number>>;
  /** The backstop: indexes journals the pending index does not point to; resolves how many it found. */
  indexJournals(): Promise<number>;
  /** Journal entries not yet acknowledged, over every user (the index's total). */
  pendingCount(): Promise<number>;
  /** Takes the sync lease for `ttlMs` if it is free or already `token`'s; resolves whether it did. */
  acquireLease(token: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease back if `token` still holds it. */
  releaseLease(token: string): Promise<void>;
  /** An id of the server's life: it changes when the server restarted and may have lost what it held ('' when unknown). */
  runId(): Promise<string>;
  /** Calls `listener` each time the client (re)connects, so a restart can be noticed without an outage. */
  onReady(listener: () => void): void;
  /**
   * Optional (the in-process tier): a feed naming the users whose keys any client changes after a
   * read with `track` saw them; without one (or when it returns undefined) the store runs no L1,
   * since it could not stay coherent.
   */
  invalidations?(listener: InvalidationListener): InvalidationFeed | undefined;
  /**
   * Optional (drafts): the latest full item of a streaming draft that reached the cache (its start,
   * or the last progress flush: an edit with status 'streaming', written without `pending`) and when
   * it was written (ms); null once an edit with another status ended it, or when none is known.
   * The durable role may keep it too.
   */
  draftProgress?(user: string, id: string): Promise<{ message: Message; at: number } | null>;
  /**
   * Optional (drafts): up to `limit` drafts over every user whose last write is older than `before`
   * (ms), oldest first, for a sweeper to finish those a dead process abandoned. Advisory: a draft
   * may show up after it ended (`draftProgress` then answers null) or, rarely, not at all.
   */
  staleDrafts?(before: number, limit: number): Promise<{ user: string; id: string }[]>;
}

/** Every method the cache role adds to the durable contract. */
export const CACHE_METHODS = [
  'fillHistory',
  'fillUser',
  'fillSubscribers',
  'invalidate',
  'invalidateAll',
  'readPending',
  'pendingUsers',
  'readJournals',
  'ack',
  'indexJournals',
  'pendingCount',
  'acquireLease',
  'releaseLease',
  'runId',
  'onReady',
] as const satisfies readonly (keyof CacheAdapter)[];
