import { ConfigurationError, ErrorCode, ValidationError } from '../errors.js';
import { maskUrl } from '../logger.js';
import { ROLES, type JsonObject, type Role, type UserId } from '../types.js';

export interface Limits {
  /** Largest message content in UTF-8 bytes. @default 1 MiB */
  contentBytes: number;
  /** Largest serialised booking data in bytes. @default 64 KiB */
  bookingBytes: number;
  /** Largest serialised message meta in bytes. @default 64 KiB */
  metaBytes: number;
}

export const DEFAULT_LIMITS: Limits = { contentBytes: 1024 * 1024, bookingBytes: 64 * 1024, metaBytes: 64 * 1024 };
const JSON_ONLY: Limits = { ...DEFAULT_LIMITS, metaBytes: Number.POSITIVE_INFINITY };

const USER_ID = /^[A-Za-z0-9_-]{1,128}$/;
const MAX_DEPTH = 64;

/** The canonical string form of a user id: `123` and `"123"` are the same user. */
export function userKey(userId: UserId): string {
  if (typeof userId === 'number') {
    if (Number.isSafeInteger(userId)) return String(userId === 0 ? 0 : userId);
    throw invalid(ErrorCode.INVALID_USER_ID, `user id must be a safe integer, got ${String(userId)}`);
  }
  if (typeof userId === 'string' && USER_ID.test(userId)) return userId;
  throw invalid(ErrorCode.INVALID_USER_ID, `user id must be a safe integer or 1-128 characters of [A-Za-z0-9_-], got ${describe(userId)}`);
}

export function checkRole(role: unknown): Role {
  if (typeof role === 'string' && (ROLES as readonly string[]).includes(role)) return role as Role;
  throw invalid(ErrorCode.INVALID_ROLE, `role must be one of ${ROLES.join(', ')}, got ${describe(role)}`);
}

export function checkContent(content: unknown, limits: Limits): string {
  if (typeof content !== 'string') {
    throw invalid(ErrorCode.INVALID_CONTENT, `content must be a string, got ${describe(content)}`);
  }
  checkText(content, ErrorCode.INVALID_CONTENT, 'content');
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings skip the exact count.
  if (content.length * 3 > limits.contentBytes && Buffer.byteLength(content, 'utf8') > limits.contentBytes) {
    throw invalid(ErrorCode.CONTENT_TOO_LARGE, `content is larger than ${limits.contentBytes} bytes`);
  }
  return content;
}

/** Strips spaces, dashes, dots and brackets; accepts an optional `+` and 8-15 digits; returns `+digits`. */
export function normalizePhone(phone: unknown): string {
  if (typeof phone !== 'string') throw invalid(ErrorCode.INVALID_PHONE, `phone must be a string, got ${describe(phone)}`);
  const compact = phone.replace(/[\s\-.()[\]]/g, '');
  const match = /^\+?(\d{8,15})$/.exec(compact);
  if (!match) throw invalid(ErrorCode.INVALID_PHONE, 'phone must be an optional + followed by 8-15 digits');
  return `+${match[1] as string}`;
}

export function checkBooking(booking: unknown, limits: Limits): JsonObject {
  return checkJsonObject(booking, limits.bookingBytes, ErrorCode.INVALID_BOOKING, 'booking data');
}

export function checkMeta(meta: unknown, limits: Limits): JsonObject {
  return checkJsonObject(meta, limits.metaBytes, ErrorCode.INVALID_META, 'meta');
}

/** Validates a plain JSON object and returns a copy, so later changes by the caller change nothing stored. */
function checkJsonObject(value: unknown, maxBytes: number, code: ErrorCode, what: string): JsonObject {
  if (!isPlainObject(value)) throw invalid(code, `${what} must be a plain JSON object, got ${describe(value)}`);
  checkJson(value, code, what, 0, new Set());
  const json = JSON.stringify(value);
  if (Buffer.byteLength(json, 'utf8') > maxBytes) throw invalid(code, `${what} is larger than ${maxBytes} bytes serialised`);
  return JSON.parse(json) as JsonObject;
}

function checkJson(value: unknown, code: ErrorCode, path: string, depth: number, seen: Set<object>): void {
  if (value === null || typeof value === 'boolean') return;
  if (typeof value === 'string') {
    checkText(value, code, path);
    return;
  }
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return;
    throw invalid(code, `${path} is ${String(value)}, which JSON cannot hold`);
  }
  if (typeof value !== 'object') throw invalid(code, `${path} is a ${typeof value}, which JSON cannot hold`);
  if (depth >= MAX_DEPTH) throw invalid(code, `${path} is nested deeper than ${MAX_DEPTH} levels`);
  if (seen.has(value)) throw invalid(code, `${path} refers to itself`);
  seen.add(value);
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      if (item === undefined) throw invalid(code, `${path}[${i}] is undefined, which JSON cannot hold`);
      checkJson(item, code, `${path}[${i}]`, depth + 1, seen);
    });
  } else if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      checkText(key, code, `${path} key`);
      if (item !== undefined) checkJson(item, code, `${path}.${key}`, depth + 1, seen);
    }
  } else {
    throw invalid(code, `${path} is a ${value.constructor?.name ?? 'object'}, not a plain object or array`);
  }
  seen.delete(value);
}

// PostgreSQL text and jsonb cannot hold NUL, and lone surrogates do not survive UTF-8.
function checkText(text: string, code: ErrorCode, what: string): void {
  if (text.includes('\u0000')) throw invalid(code, `${what} contains a NUL character, which PostgreSQL cannot store`);
  if (!text.isWellFormed()) throw invalid(code, `${what} contains a lone UTF-16 surrogate (not valid Unicode)`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** An idempotency key: a safe integer (a Telegram update_id) or a string of 1-200 characters. */
export function checkIdempotencyKey(key: unknown): string {
  if (typeof key === 'number' && Number.isSafeInteger(key)) return String(key);
  if (typeof key === 'string' && key.length >= 1 && key.length <= 200) {
    checkText(key, ErrorCode.INVALID_OPTION, 'idempotencyKey');
    return key;
  }
  throw invalid(ErrorCode.INVALID_OPTION, `idempotencyKey must be a safe integer or a string of 1-200 characters, got ${describe(key)}`);
}

const THREAD_ID = /^[A-Za-z0-9_-]{1,128}$/;
const MESSAGE_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
export const MAX_TITLE_LENGTH = 256;

/** A thread id: 1-128 characters of [A-Za-z0-9_-]; undefined is the main thread. */
export function checkThread(thread: unknown): string {
  if (thread === undefined) return 'main';
  if (typeof thread === 'string' && THREAD_ID.test(thread)) return thread;
  throw invalid(ErrorCode.INVALID_THREAD, `thread must be 1-128 characters of [A-Za-z0-9_-], got ${describe(thread)}`);
}

/** A message id the store made: 26 characters of Crockford base32. */
export function checkMessageId(id: unknown): string {
  if (typeof id === 'string' && MESSAGE_ID.test(id)) return id;
  throw invalid(ErrorCode.INVALID_MESSAGE_ID, `message id must be an id the store returned (26 characters of Crockford base32), got ${describe(id)}`);
}

/** A thread title: a string of at most 256 characters, or null to remove it. */
export function checkTitle(title: unknown): string | null {
  if (title === null) return null;
  if (typeof title === 'string' && title.length <= MAX_TITLE_LENGTH) {
    checkText(title, ErrorCode.INVALID_TITLE, 'title');
    return title;
  }
  throw invalid(ErrorCode.INVALID_TITLE, `title must be a string of at most ${MAX_TITLE_LENGTH} characters or null, got ${describe(title)}`);
}

export function checkLimit(limit: unknown, max: number): number {
  if (typeof limit === 'number' && Number.isSafeInteger(limit) && limit >= 0 && limit <= max) return limit;
  throw invalid(ErrorCode.INVALID_OPTION, `limit must be an integer from 0 to ${max}, got ${describe(limit)}`);
}

/** A budget of tokens for a read: a positive safe integer. */
export function checkMaxTokens(maxTokens: unknown): number {
  if (typeof maxTokens === 'number' && Number.isSafeInteger(maxTokens) && maxTokens > 0) return maxTokens;
  throw invalid(ErrorCode.INVALID_OPTION, `maxTokens must be a positive integer, got ${describe(maxTokens)}`);
}

/** Most tokens one message may count (PostgreSQL's integer column). */
export const MAX_MESSAGE_TOKENS = 2_147_483_647;

/**
 * Runs `count` (the store's countTokens) and checks what it says: a finite number >= 0, rounded up
 * to an integer (a budget never undercounts). `what` names the message for the error (role,
 * thread, id): never its content.
 */
export function countTokensOf(count: () => unknown, what: string): number {
  let n: unknown;
  try {
    n = count();
  } catch (error) {
    throw new ValidationError(ErrorCode.INVALID_TOKEN_COUNT, `countTokens threw for ${what}: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
    });
  }
  if (typeof n === 'number' && Number.isFinite(n) && n >= 0 && n <= MAX_MESSAGE_TOKENS) return Math.ceil(n);
  throw invalid(
    ErrorCode.INVALID_TOKEN_COUNT,
    `countTokens returned ${describe(n)} for ${what}: it must return a finite number from 0 to ${MAX_MESSAGE_TOKENS}`,
  );
}

function invalid(code: ErrorCode, message: string): ValidationError {
  return new ValidationError(code, message);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value.length > 40 ? `a ${value.length}-character string` : JSON.stringify(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

/**
 * A connection URL with one of `protocols` (e.g. 'redis:'); `owner` names where it came from
 * (an option or a variable). The error masks any password.
 */
export function checkUrl(url: string, owner: string, protocols: readonly string[]): string {
  const expected = protocols.map((p) => `${p}//`).join(' or ');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigurationError(ErrorCode.INVALID_URL, `${owner} is not a URL: "${maskUrl(url)}" (expected ${expected}[user:password@]host:port)`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigurationError(ErrorCode.INVALID_URL, `${owner} must start with ${expected}, got ${maskUrl(url)}`);
  }
  return url;
}

/** JSON checks only, for integrations: the store applies its size limit when the message is written. */
export function checkMetaJson(meta: unknown): JsonObject {
  return checkMeta(meta, JSON_ONLY);
}
