export {
  TieredStore,
  type AddMemoryOptions,
  type DeadLetter,
  type HistoryOptions,
  type ListThreadsOptions,
  type MessagePatch,
  type StoreEvents,
} from './store.js';
export type { Draft } from './draft.js';
export { RedisAdapter, type RedisAdapterOptions } from './adapters/redis.js';
export { PostgresAdapter, type PostgresAdapterOptions } from './adapters/postgres.js';
export { MemoryAdapter, type MemoryAdapterOptions } from './adapters/memory.js';
export type {
  StorageAdapter,
  AdapterConfig,
  CacheMiss,
  DeadLetterRecord,
  HistoryRead,
  HistoryReadOptions,
  ReadOptions,
  ThreadRecord,
  ThreadRecordPage,
  RetentionRule,
  UserRecord,
  WriteOutcome,
} from './adapters/contract.js';
export type { CacheAdapter, JournalEntry } from './cache/contract.js';
export type { AppendOp, CutOp, EditOp, Op, Stamped, SummaryOp, SummaryRecord } from './model/ops.js';
export type { L1Options, Retention, SummarizeHook, SummarizeInput, TieredStoreOptions, TokenCountInput, TtlSeconds, WriteMode } from './options.js';
export type { FromEnvOptions } from './env.js';
export type { Limits } from './model/validate.js';
export type { OperationStats, StoreStats, TierStats } from './stats.js';
export type { L1Stats } from './cache/l1.js';
export type { Context } from './model/context.js';
export { ConfigurationError, EncryptionError, ErrorCode, StoreError, TierError, UnavailableError, ValidationError, isStoreError } from './errors.js';
export type { EncryptionOptions, DataKeyRecord, DataKeyStore } from './crypto/keys.js';
export type {
  BookingData,
  Health,
  JsonObject,
  JsonValue,
  Logger,
  Message,
  MessageStatus,
  Role,
  SyncResult,
  ThreadInfo,
  ThreadExport,
  ThreadPage,
  TierState,
  UserExport,
  UserId,
} from './types.js';
