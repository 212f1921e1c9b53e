/** A user: a safe integer (Telegram chat ids may be negative) or 1-128 characters of [A-Za-z0-9_-]. */
export type UserId = number | string;

export type Role = 'system' | 'user' | 'assistant' | 'tool';
export const ROLES: readonly Role[] = ['system', 'user', 'assistant', 'tool'];

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface Message {
  /** Time-ordered id made by the client (26 characters); the order of a history is the order of ids. */
  id: string;
  role: Role;
  content: string;
  createdAt: Date;
  meta?: JsonObject;
  /** The conversation it belongs to ('main' unless written with `{ thread }`). */
  thread: string;
  /** Set once a person edited it (updateMessage, a Telegram edit). */
  updatedAt?: Date;
  /** 'streaming': a draft still being written; 'aborted': a draft that stopped. Absent: complete. */
  status?: MessageStatus;
  /**
   * The message's token count, stored with it at write time by the store's `countTokens` (default:
   * ceil(UTF-8 bytes / 4) + 4), kept up to date by edits; a message stored without one (by 0.1, or
   * a draft's progress) reads with the default formula.
   */
  tokens: number;
}

export type MessageStatus = 'streaming' | 'aborted';

/** One conversation of a user, as `listThreads` returns it. */
export interface ThreadInfo {
  id: string;
  title: string | null;
  /** Messages it holds now. */
  messages: number;
  createdAt: Date;
  /** Its newest message, edit or title change. */
  updatedAt: Date;
}

export interface ThreadPage {
  threads: ThreadInfo[];
  /** Pass it back for the next page; null on the last one. */
  cursor: string | null;
}

export type BookingData = JsonObject;

/** One thread of a {@link UserExport}: every message it holds, oldest first. */
export interface ThreadExport {
  id: string;
  title: string | null;
  /** The thread's summary; null while the store keeps none. */
  summary: string | null;
  messages: Message[];
}

/** Everything the store holds for one user (`exportUser`), pending writes included. */
export interface UserExport {
  userId: string;
  exportedAt: Date;
  phone: string | null;
  booking: BookingData | null;
  subscribed: boolean;
  /** Most recently active first, as `listThreads` orders them. */
  threads: ThreadExport[];
}

/** `absent`: not configured. `down`: configured, failing, probed in the background. */
export type TierState = 'up' | 'down' | 'absent';

export interface Health {
  redis: TierState;
  postgres: TierState;
  memory: TierState;
  /** Writes not yet in the durable tier, as this process last saw them. */
  pending: number;
  lastSyncAt: Date | null;
  /** Writes PostgreSQL rejected for good; see the `deadLetter` event. */
  deadLetters: number;
}

export interface SyncResult {
  /** Messages moved to the durable tier in this pass. */
  messages: number;
  /** Phone, booking, clear and delete changes moved. */
  userData: number;
  /** Subscribe and unsubscribe changes moved. */
  subscribers: number;
  /** Writes still waiting after the pass. */
  pending: number;
  durationMs: number;
}

/** Anything with these four methods: console, pino, winston, ... */
export interface Logger {
  debug(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}
