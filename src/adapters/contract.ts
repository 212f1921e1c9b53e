import type { Secrets } from '../logger.js';
import type { Op, Stamped, SummaryRecord } from '../model/ops.js';
import type { JsonObject, Logger, Message } from '../types.js';

/** What the store tells each adapter before first use. */
export interface AdapterConfig {
  /** `durable`: the system of record. `cache`: hot copies that expire and are filled on a miss. */
  role: 'cache' | 'durable';
  /** Messages per user kept hot. */
  historyLimit: number;
  /** Time to live of hot copies, in milliseconds; 0 keeps them forever. */
  ttlMs: { history: number; userData: number; subscribers: number };
  logger: Logger;
  secrets: Secrets;
}

export interface ReadOptions {
  /** Read what is committed on the primary: the result fills a cache. */
  fresh?: boolean;
  /**
   * For a cache with an invalidation feed: the result fills an in-process tier, so the feed must
   * report later changes to what this read saw (Redis: the read goes through the feed's tracked connection).
   */
  track?: boolean;
}

export interface HistoryReadOptions extends ReadOptions {
  /** The thread to read. @default 'main' */
  thread?: string;
  /**
   * A hint for a cache: the caller answers most hits itself (an in-process tier), so a miss is
   * likely and worth finding in one round trip rather than after a cheaper read for a hit.
   */
  missLikely?: boolean;
}

export interface HistoryRead {
  /** Oldest first, the newest `limit` of the thread. */
  messages: Message[];
  /** The id at or below which the thread's messages were cleared or deleted with the user ('' for none). */
  floor: string;
  /** Id ranges [from, to] removed from the thread above the floor (deleteMessage, truncateAfter), when known. */
  cuts?: [string, string][];
}

/** A thread as a durable tier keeps it; `lastId` (its newest message id, '' for none) lets pending writes be laid over it. */
export interface ThreadRecord {
  id: string;
  title: string | null;
  messages: number;
  createdAt: Date;
  updatedAt: Date;
  lastId: string;
}

export interface ThreadRecordPage {
  threads: ThreadRecord[];
  cursor: string | null;
}

/** A user's fields, each with the id of the write that set it ('' when unknown, as from a cache). */
export interface UserRecord {
  phone: Stamped<string | null>;
  booking: Stamped<JsonObject | null>;
  subscribed: Stamped<boolean>;
}

/**
 * A cache that does not hold what was asked. `version` is what a fill must present (a write since
 * the miss changes it, so a fill can never install a copy older than that write); `pending` are
 * the ops journaled in the cache for that user that the durable tier may not have yet.
 */
export interface CacheMiss {
  miss: true;
  version: string;
  pending: Op[];
}

/**
 * The durable contract (PostgreSQL, Redis alone, memory); the cache role adds `CacheAdapter`.
 * `runAdapterContract` in `tiered-conversation-store/testing` checks both. Methods reject only when the tier fails; `isUnavailable` says whether that failure
 * means the tier cannot be reached (the store then marks it down) or refused the request.
 */
export interface StorageAdapter {
  /** `redis`, `postgres` or `memory`: the name in logs, events and `health()`. */
  readonly name: string;
  /** The deadline the adapter puts on each call, in milliseconds (0: it never waits on anything). */
  readonly timeoutMs: number;
  /** Called once by the store that owns the adapter, before anything else; throws if bound twice. */
  bind(config: AdapterConfig): void;
  /** Connects and prepares (migrations). Idempotent; rejects within the adapter's timeout when unreachable. */
  connect(): Promise<void>;
  /** One round trip; rejects when the tier is unreachable. */
  ping(): Promise<void>;
  /**
   * Applies ops. Idempotent and order-independent; a cache only refreshes copies it already holds.
   * May resolve to one {@link WriteOutcome} per op.
   */
  write(ops: readonly Op[]): Promise<void | readonly WriteOutcome[]>;
  /**
   * The newest `limit` messages, oldest first; only a cache answers with a miss. `fresh`: the read
   * fills a cache, so it must see every committed write (no lagging replica).
   */
  readHistory(user: string, limit: number, options?: HistoryReadOptions): Promise<HistoryRead | CacheMiss>;
  /**
   * The message with id `id` of any of the user's threads, or null. A cache looks in the copies it
   * holds and answers null when none has it (the store then asks the durable tier).
   */
  readMessage(user: string, id: string): Promise<Message | null>;
  /**
   * The user's threads holding messages or a title, most recently active first (`updatedAt`
   * descending, then id), `limit` per page; `cursor` is what the previous page returned. A cache
   * is never asked.
   */
  listThreads(user: string, limit: number, cursor: string | null): Promise<ThreadRecordPage>;
  /**
   * The thread's rolling summary, or null. Required of a durable tier; a cache holds no summary
   * (the store never asks it; Redis in the cache role answers null).
   */
  readSummary(user: string, thread: string, options?: ReadOptions): Promise<SummaryRecord | null>;
  /**
   * Optional: a lease on summarising one thread, across processes: true when `token` holds it
   * now (taken, or already its own) for `ttlMs`. Redis keeps it in the user's slot, PostgreSQL in
   * the summary's row.
   */
  leaseSummary?(user: string, thread: string, token: string, ttlMs: number): Promise<boolean>;
  /** Optional: gives the lease back if `token` still holds it. */
  releaseSummary?(user: string, thread: string, token: string): Promise<void>;
  /** Phone, booking and subscription (nulls and false for an unknown user); a cache may answer with a miss. */
  readUser(user: string, options?: ReadOptions): Promise<UserRecord | CacheMiss>;
  /** Every subscriber, in no particular order; a cache may answer with a miss. */
  readSubscribers(options?: ReadOptions): Promise<string[] | CacheMiss>;
  isSubscriber(user: string): Promise<boolean | CacheMiss>;
  /**
   * Optional: deletes, in batches of `batch`, messages beyond the newest `keepLast` of each of
   * `users` and messages created before `before`; resolves how many went. The syncer calls it when
   * `retention` is set.
   */
  enforceRetention?(rule: RetentionRule): Promise<number>;
  /**
   * Optional: messages still `'streaming'` that were created before `before`, oldest first, at most
   * `limit`: drafts a process may have left behind, for the syncer to finish as `'aborted'`.
   */
  streamingDrafts?(before: Date, limit: number): Promise<{ user: string; message: Message }[]>;
  /** Optional: keeps a dead letter where every process (and the doctor command) can see it. */
  recordDeadLetter?(letter: DeadLetterRecord): Promise<void>;
  /** Optional: the connection target, secrets masked, for the store's start-up line. */
  describe?(): string;
  /** Optional: strings (URLs with passwords) the store masks in every log line and error. */
  secrets?(): string[];
  /** True when `error` (thrown by this adapter) means the tier cannot be reached or timed out. */
  isUnavailable(error: unknown): boolean;
  /** Drops connections that may be hung so the next call opens fresh ones; no-op for a client the user passed. */
  reset(): Promise<void>;
  /** Closes what the adapter opened; leaves a client the user passed in open. Idempotent. */
  close(): Promise<void>;
}

export interface RetentionRule {
  users: readonly string[];
  keepLast?: number;
  before?: Date;
  batch: number;
}

/** A write the durable tier refused for good, or a journal entry that could not be read ('unreadable'). */
export interface DeadLetterRecord {
  user: string;
  kind: Op['kind'] | 'unreadable';
  /** The op's id ('' when unreadable). */
  id: string;
  /** The op as JSON, or the raw journal entry. */
  entry: string;
  error: string;
}

/**
 * What became of one op: `true`/`false` whether it changed a copy a cache holds, or a string when
 * the op repeated an earlier message's idempotency key (the string is that message's id; nothing
 * was written).
 */
export type WriteOutcome = boolean | string;

export function isMiss(value: unknown): value is CacheMiss {
  return typeof value === 'object' && value !== null && (value as Partial<CacheMiss>).miss === true;
}
