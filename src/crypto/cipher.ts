import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { EncryptionError, ErrorCode } from '../errors.js';

/**
 * AES-256-GCM with `node:crypto` only. A sealed value is one string,
 * `enc:v1:<dataKeyId>:<base64url(iv | ciphertext | tag)>`: the id of the user's data key that
 * sealed it travels with it. The associated data binds it to its user and field, so a value
 * copied to another user or another field fails authentication (DECRYPTION_FAILED).
 */
export const SEALED_PREFIX = 'enc:v1:';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The fields that are sealed; each value is bound to one of them. */
export type SealedField = 'content' | 'meta' | 'phone' | 'booking' | 'title' | 'summary';

export function isSealed(value: string): boolean {
  return value.startsWith(SEALED_PREFIX);
}

/** The associated data of a value: the user and the field (and the format version). */
function aad(user: string, field: string): Buffer {
  return Buffer.from(`tcs:v1\0${user}\0${field}`, 'utf8');
}

/** IVs are cut from a pool of random bytes refilled 4 KiB at a time (one call to the CSPRNG per 341 values, not per value). */
const IV_POOL_BYTES = 4096;
let ivPool = Buffer.alloc(0);
let ivAt = 0;
function nextIv(): Buffer {
  if (ivAt + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_POOL_BYTES);
    ivAt = 0;
  }
  const iv = ivPool.subarray(ivAt, ivAt + IV_BYTES);
  ivAt += IV_BYTES;
  return iv;
}

export function seal(key: Buffer, keyId: string, user: string, field: SealedField, plaintext: string): string {
  return `${SEALED_PREFIX}${keyId}:${encrypt(key, aad(user, field), Buffer.from(plaintext, 'utf8'))}`;
}

/** The data key id a sealed value names (it is not secret). */
export function sealedKeyId(value: string): string {
  const end = value.indexOf(':', SEALED_PREFIX.length);
  if (end < 0) throw unreadable('a sealed value without a key id');
  return value.slice(SEALED_PREFIX.length, end);
}

export function open(key: Buffer, user: string, field: SealedField, value: string): string {
  const end = value.indexOf(':', SEALED_PREFIX.length);
  return decrypt(key, aad(user, field), value.slice(end + 1), `the ${field} of user ${user}`).toString('utf8');
}

/** base64url(iv | ciphertext | tag) of `plaintext` under `key` with associated data `ad`. */
export function encrypt(key: Buffer, ad: Buffer, plaintext: Buffer): string {
  const iv = nextIv();
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(ad);
  const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return body.toString('base64url');
}

export function decrypt(key: Buffer, ad: Buffer, text: string, what: string): Buffer {
  const body = Buffer.from(text, 'base64url');
  if (body.length < IV_BYTES + TAG_BYTES) throw unreadable(`${what}: too short to be a ciphertext`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, IV_BYTES));
    decipher.setAAD(ad);
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    return Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw unreadable(`${what} failed authentication: tampered with, or moved from another user or field`);
  }
}

function unreadable(message: string): EncryptionError {
  return new EncryptionError(ErrorCode.DECRYPTION_FAILED, message);
}
