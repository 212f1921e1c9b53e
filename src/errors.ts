/** Every code the library throws; stable across versions, documented in the README. */
export const ErrorCode = {
  INVALID_USER_ID: 'INVALID_USER_ID',
  INVALID_ROLE: 'INVALID_ROLE',
  INVALID_CONTENT: 'INVALID_CONTENT',
  CONTENT_TOO_LARGE: 'CONTENT_TOO_LARGE',
  INVALID_META: 'INVALID_META',
  INVALID_PHONE: 'INVALID_PHONE',
  INVALID_BOOKING: 'INVALID_BOOKING',
  INVALID_OPTION: 'INVALID_OPTION',
  INVALID_URL: 'INVALID_URL',
  MISSING_DEPENDENCY: 'MISSING_DEPENDENCY',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  STORE_FULL: 'STORE_FULL',
  STORE_CLOSED: 'STORE_CLOSED',
  TIER_TIMEOUT: 'TIER_TIMEOUT',
  TIER_ERROR: 'TIER_ERROR',
  ADAPTER_IN_USE: 'ADAPTER_IN_USE',
  ADAPTER_NOT_BOUND: 'ADAPTER_NOT_BOUND',
  UNREADABLE_ENTRY: 'UNREADABLE_ENTRY',
  INVALID_THREAD: 'INVALID_THREAD',
  INVALID_MESSAGE_ID: 'INVALID_MESSAGE_ID',
  INVALID_TITLE: 'INVALID_TITLE',
  DRAFT_CLOSED: 'DRAFT_CLOSED',
  INVALID_TOKEN_COUNT: 'INVALID_TOKEN_COUNT',
  /** A ciphertext or a data key names a master key id that `encryption.keys` does not hold (the id is in the message, never a key). */
  ENCRYPTION_KEY_MISSING: 'ENCRYPTION_KEY_MISSING',
  /** A ciphertext failed authentication: tampered with, or moved to another user or field. */
  DECRYPTION_FAILED: 'DECRYPTION_FAILED',
  /** A ciphertext's data key was destroyed by deleteUser (crypto-shredding), or never belonged to this user. */
  DATA_KEY_DESTROYED: 'DATA_KEY_DESTROYED',
  /** With encryption on, a tier returned a plaintext value and `encryption.allowPlaintext` is not set. */
  PLAINTEXT_REFUSED: 'PLAINTEXT_REFUSED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error the library throws: `code` is stable, `message` is for people. */
export class StoreError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The caller passed something the store will not write; nothing was written. */
export class ValidationError extends StoreError {}

/** The store or an adapter was configured with something unusable. */
export class ConfigurationError extends StoreError {}

/** No tier could take the operation (or the bounded fallback is full); nothing was written. */
export class UnavailableError extends StoreError {}

/** A tier failed or timed out; the store falls back to another tier when one can take the call. */
export class TierError extends StoreError {
  readonly tier: string;
  constructor(tier: string, code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.tier = tier;
  }
}

/** Data that cannot be decrypted (or plaintext refused): the message names ids, never a key or the data. */
export class EncryptionError extends StoreError {}

/** An adapter belongs to one store: bound once, and never used before. */
export function adapterInUse(adapter: string): ConfigurationError {
  return new ConfigurationError(ErrorCode.ADAPTER_IN_USE, `this ${adapter} already belongs to a store: give each store its own adapter`);
}

export function adapterNotBound(adapter: string): ConfigurationError {
  return new ConfigurationError(ErrorCode.ADAPTER_NOT_BOUND, `${adapter} used before a store bound it: pass it to new TieredStore({ ... }) first`);
}

export function isStoreError(error: unknown): error is StoreError {
  return error instanceof StoreError;
}
