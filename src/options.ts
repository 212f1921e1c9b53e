import type { StorageAdapter } from './adapters/contract.js';
import type { MemoryAdapter } from './adapters/memory.js';
import type { CacheAdapter } from './cache/contract.js';
import { ConfigurationError, ErrorCode } from './errors.js';
import type { JsonObject, Logger, Message, Role } from './types.js';
import { DEFAULT_LIMITS, type Limits } from './model/validate.js';
import { defaultTokens } from './model/budget.js';
import type { EncryptionOptions } from './crypto/keys.js';

/** What `countTokens` is given: the message as it is being written (meta absent when it has none). */
export interface TokenCountInput {
  role: Role;
  content: string;
  meta?: JsonObject | undefined;
}

export interface TieredStoreOptions {
  /** The fast tier: a `RedisAdapter`, or any `CacheAdapter` (alone, it is the durable tier). */
  redis?: CacheAdapter | undefined;
  /** The durable tier: a `PostgresAdapter`, or any `StorageAdapter`. */
  postgres?: StorageAdapter | undefined;
  /** The RAM tier: the fallback when the others are down (the whole store when none is given). @default new MemoryAdapter() */
  memory?: MemoryAdapter | undefined;
  /** Messages per user kept hot and returned by `getHistory` without a limit. @default 50 */
  historyLimit?: number;
  /** Time to live of hot copies in Redis, in seconds. @default { history: 3600, userData: 3600, subscribers: 86400 } */
  ttlSeconds?: Partial<TtlSeconds>;
  /** `write-through`: Redis and PostgreSQL in parallel. `write-behind`: ack after Redis; the syncer moves it. @default 'write-through' */
  writeMode?: WriteMode;
  /** Where the store logs: console when unset, `false` for silence, or any logger with debug/info/warn/error (pino works). */
  logger?: Logger | false;
  /** Size limits of input. @default { contentBytes: 1 MiB, bookingBytes: 64 KiB, metaBytes: 64 KiB } */
  limits?: Partial<Limits>;
  /** How often a tier that is down is probed, in milliseconds. @default 1000 */
  probeIntervalMs?: number;
  /** Most writes held in this process while PostgreSQL is unreachable; past it writes are refused. @default 100_000 */
  journalLimit?: number;
  /** Ops moved per transaction by the syncer. @default 5000 */
  syncBatchSize?: number;
  /**
   * What PostgreSQL keeps, enforced in batches by the syncer: the newest `keepLast` messages of each
   * thread of the users this process wrote to (at least `historyLimit`), and/or messages younger
   * than `maxAgeDays`. Removed like the CLI's `purge` removes: for good (a replayed journal entry
   * does not bring a message back).
   * @default keep everything
   */
  retention?: Retention;
  /** A draft's `update`s are written at most once per this many milliseconds (to Redis, or RAM). @default 250 */
  draftFlushMs?: number;
  /** A draft not updated for this long (its process died) is finished as 'aborted' by the syncer. @default 600_000 (10 minutes) */
  draftTimeoutMs?: number;
  /**
   * A message's token count, run once per write (addMemory, updateMessage, a draft's start, finish
   * and abort; not its `update`s) and stored with the message as `message.tokens`; budget reads
   * (`getHistory({ maxTokens })`) add these up. Must return a finite number >= 0 (a fraction is
   * rounded up); anything else, or a throw, fails the write with `INVALID_TOKEN_COUNT`.
   * @default ceil(UTF-8 bytes of content / 4) + 4
   */
  countTokens?: (message: TokenCountInput) => number;
  /**
   * Your LLM call that folds a thread's older messages into a rolling summary: given the previous
   * summary (null for none) and the messages it does not cover yet, oldest first, resolve the new
   * summary. Runs in the background, one run per thread at a time across processes; see getContext.
   */
  summarize?: SummarizeHook | undefined;
  /** A thread's tokens not yet in its summary that start a summary run. @default 4000 */
  summarizeAfterTokens?: number;
  /** How long one `summarize` call may take before it counts as failed (and is retried), in milliseconds. @default 60_000 */
  summarizeTimeoutMs?: number;
  /**
   * The in-process tier: hot histories served from this process's memory, kept coherent with every
   * other process through Redis's invalidation messages, and the last-known copies for
   * stale-if-error. On when Redis is present (not on a Redis Cluster); `false` turns it off (`true`: the defaults).
   * @default { maxBytes: 32 MiB }
   */
  l1?: L1Options | boolean | undefined;
  /**
   * Encryption at rest (AES-256-GCM): content, meta, phone, booking, titles and summaries are sealed
   * in Redis, PostgreSQL and their journals under per-user data keys wrapped by `keys[current]`;
   * `deleteUser` destroys the user's data keys. See docs/api.md, "Encryption at rest".
   */
  encryption?: EncryptionOptions | undefined;
}

export interface L1Options {
  /** Estimated bytes of process memory it may hold (about 260 bytes per message plus its text). @default 32 MiB */
  maxBytes?: number;
}

/** What a `summarize` hook is given. */
export interface SummarizeInput {
  userId: string;
  thread: string;
  /** The previous summary, or null (none yet, or it was marked for a rerun: then `messages` start from the oldest held). */
  summary: string | null;
  /** The messages the summary does not cover yet, oldest first (no drafts still streaming). */
  messages: Message[];
  /** Aborted when the run gives up on the call (past `summarizeTimeoutMs`, or the store closes). */
  signal: AbortSignal;
}

export type SummarizeHook = (input: SummarizeInput) => Promise<string> | string;

export interface Retention {
  keepLast?: number;
  maxAgeDays?: number;
}

export type WriteMode = 'write-through' | 'write-behind';

export interface TtlSeconds {
  history: number;
  userData: number;
  subscribers: number;
}

export interface ResolvedOptions {
  historyLimit: number;
  ttlMs: TtlSeconds;
  writeMode: WriteMode;
  limits: Limits;
  probeIntervalMs: number;
  journalLimit: number;
  syncBatchSize: number;
  retention: Retention;
  draftFlushMs: number;
  draftTimeoutMs: number;
  countTokens: (message: TokenCountInput) => number;
  summarize: SummarizeHook | undefined;
  summarizeAfterTokens: number;
  summarizeTimeoutMs: number;
  l1: { maxBytes: number } | false;
}

export const MAX_HISTORY_LIMIT = 10_000;

export function resolveOptions(options: TieredStoreOptions): ResolvedOptions {
  const ttl = { history: 3600, userData: 3600, subscribers: 86_400, ...options.ttlSeconds };
  for (const [name, value] of Object.entries(ttl)) nonNegative(value, `ttlSeconds.${name}`);
  const writeMode = options.writeMode ?? 'write-through';
  if (writeMode !== 'write-through' && writeMode !== 'write-behind') {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, `writeMode must be 'write-through' or 'write-behind', got ${JSON.stringify(writeMode)}`);
  }
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  for (const [name, value] of Object.entries(limits)) positive(value, `limits.${name}`);
  const historyLimit = positive(options.historyLimit, 'historyLimit', 50);
  if (!Number.isSafeInteger(historyLimit) || historyLimit > MAX_HISTORY_LIMIT) {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, `historyLimit must be an integer from 1 to ${MAX_HISTORY_LIMIT}, got ${historyLimit}`);
  }
  if (options.countTokens !== undefined && typeof options.countTokens !== 'function') {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, `countTokens must be a function, got ${typeof options.countTokens}`);
  }
  return {
    historyLimit,
    ttlMs: { history: ttl.history * 1000, userData: ttl.userData * 1000, subscribers: ttl.subscribers * 1000 },
    writeMode,
    limits,
    probeIntervalMs: positive(options.probeIntervalMs, 'probeIntervalMs', 1000),
    journalLimit: positive(options.journalLimit, 'journalLimit', 100_000),
    syncBatchSize: positive(options.syncBatchSize, 'syncBatchSize', 5000),
    retention: checkRetention(options.retention, historyLimit),
    draftFlushMs: positive(options.draftFlushMs, 'draftFlushMs', 250),
    draftTimeoutMs: positive(options.draftTimeoutMs, 'draftTimeoutMs', 600_000),
    countTokens: options.countTokens ?? defaultTokens,
    summarize: checkHook(options.summarize),
    summarizeAfterTokens: positive(options.summarizeAfterTokens, 'summarizeAfterTokens', 4000),
    summarizeTimeoutMs: positive(options.summarizeTimeoutMs, 'summarizeTimeoutMs', 60_000),
    l1: checkL1(options.l1),
  };
}

function checkL1(l1: L1Options | boolean | undefined): { maxBytes: number } | false {
  if (l1 === false) return false;
  if (l1 === true) return checkL1(undefined);
  if (l1 !== undefined && (l1 === null || typeof l1 !== 'object')) {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, `l1 must be false or { maxBytes }, got ${String(l1)}`);
  }
  return { maxBytes: Math.floor(positive(l1?.maxBytes, 'l1.maxBytes', 32 * 1024 * 1024)) };
}

function checkHook(hook: unknown): SummarizeHook | undefined {
  if (hook === undefined || typeof hook === 'function') return hook as SummarizeHook | undefined;
  throw new ConfigurationError(ErrorCode.INVALID_OPTION, `summarize must be a function, got ${typeof hook}`);
}

function checkRetention(retention: Retention | undefined, historyLimit: number): Retention {
  const out: Retention = {};
  if (retention?.keepLast !== undefined) {
    const keepLast = positive(retention.keepLast, 'retention.keepLast');
    if (!Number.isSafeInteger(keepLast) || keepLast < historyLimit) {
      throw new ConfigurationError(
        ErrorCode.INVALID_OPTION,
        `retention.keepLast must be an integer of at least historyLimit (${historyLimit}), got ${keepLast}`,
      );
    }
    out.keepLast = keepLast;
  }
  if (retention?.maxAgeDays !== undefined) out.maxAgeDays = positive(retention.maxAgeDays, 'retention.maxAgeDays');
  return out;
}

/** `value` if it is a positive finite number, `fallback` if undefined; a coded error otherwise. */
export function positive(value: number | undefined, name: string, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value;
  throw new ConfigurationError(ErrorCode.INVALID_OPTION, `${name} must be a positive number, got ${String(value)}`);
}

function nonNegative(value: number, name: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
  throw new ConfigurationError(ErrorCode.INVALID_OPTION, `${name} must be a number of seconds >= 0, got ${String(value)}`);
}
