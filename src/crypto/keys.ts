import { randomBytes } from 'node:crypto';
import { ConfigurationError, EncryptionError, ErrorCode } from '../errors.js';
import { nextId } from '../model/ids.js';
import { decrypt, encrypt } from './cipher.js';

/** `encryption` of the store's options. */
export interface EncryptionOptions {
  /** Master keys by id: 32 random bytes each (ids: 1-64 of [A-Za-z0-9_-]). Keep every id that wrapped data still in use. */
  keys: Record<string, Buffer | Uint8Array>;
  /** The id of the key that wraps new data keys. */
  current: string;
  /** Rollout: read plaintext values written before encryption was on instead of refusing them. @default false */
  allowPlaintext?: boolean;
}

/** A user's data key as a tier stores it: wrapped by a master key; `destroyed` (the delete's op id) once deleteUser shredded it. */
export interface DataKeyRecord {
  id: string;
  /** The master key id that wraps it ('' once destroyed). */
  master: string;
  /** base64url(iv | wrapped key | tag) ('' once destroyed). */
  wrapped: string;
  destroyed?: string;
}

/**
 * What a tier does to keep data keys, next to the data they seal (PostgreSQL: a table; Redis: a
 * hash in the user's slot). Each tier seals with keys it keeps itself, so a ciphertext is never
 * durable in a tier without its key there too.
 */
export interface DataKeyStore {
  /** The user's data keys, destroyed ones included (as tombstones). */
  readDataKeys(user: string): Promise<DataKeyRecord[]>;
  /** Stores a new key unless one with its id is there (idempotent). */
  saveDataKey(user: string, record: DataKeyRecord): Promise<void>;
  /** Destroys (leaves a tombstone of) every key of the user with an id at or below `upTo`. */
  destroyDataKeys(user: string, upTo: string): Promise<void>;
  /** Up to `limit` live keys wrapped by another master key than `master`, after `cursor` (for a re-wrap pass). */
  staleDataKeys(master: string, cursor: string | null, limit: number): Promise<{ keys: { user: string; record: DataKeyRecord }[]; cursor: string | null }>;
  /** Replaces a key's wrap only if it is still `from` (a concurrent re-wrap or destroy wins); resolves whether it did. */
  rewrapDataKey(user: string, id: string, from: string, to: { master: string; wrapped: string }): Promise<boolean>;
}

export function isDataKeyStore(adapter: object): adapter is DataKeyStore {
  const a = adapter as Partial<DataKeyStore>;
  return (['readDataKeys', 'saveDataKey', 'destroyDataKeys', 'staleDataKeys', 'rewrapDataKey'] as const).every((m) => typeof a[m] === 'function');
}

const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The master keys: checked once, kept out of every message (only ids are ever named). */
export class KeyRing {
  readonly #keys = new Map<string, Buffer>();
  #current: string;
  readonly allowPlaintext: boolean;

  constructor(options: EncryptionOptions) {
    if (typeof options !== 'object' || options === null || typeof options.keys !== 'object' || options.keys === null) {
      throw invalid('encryption must be { keys: { id: 32-byte Buffer }, current: id }');
    }
    for (const [id, key] of Object.entries(options.keys)) {
      if (!KEY_ID.test(id)) throw invalid(`encryption.keys: key ids are 1-64 of [A-Za-z0-9_-], got ${JSON.stringify(id.slice(0, 80))}`);
      if (!(key instanceof Uint8Array) || key.length !== 32) throw invalid(`encryption.keys.${id} must be 32 bytes (a Buffer), not shown here`);
      this.#keys.set(id, Buffer.from(key));
    }
    if (options.allowPlaintext !== undefined && typeof options.allowPlaintext !== 'boolean') throw invalid('encryption.allowPlaintext must be a boolean');
    this.allowPlaintext = options.allowPlaintext ?? false;
    this.#current = this.#checkCurrent(options.current);
  }

  get current(): string {
    return this.#current;
  }

  /** Makes `id` the key that wraps new data keys (it must be configured). */
  use(id: string): void {
    this.#current = this.#checkCurrent(id);
  }

  /** Every master key, as text forms a log line could leak, for the masker. */
  secretForms(): string[] {
    return [...this.#keys.values()].flatMap((key) => [key.toString('hex'), key.toString('base64'), key.toString('base64url')]);
  }

  wrap(user: string, id: string, key: Buffer): DataKeyRecord {
    const master = this.#current;
    return { id, master, wrapped: encrypt(this.#key(master), wrapAad(user, id), key) };
  }

  unwrap(user: string, record: DataKeyRecord): Buffer {
    return decrypt(this.#key(record.master), wrapAad(user, record.id), record.wrapped, `data key ${record.id} of user ${user}`);
  }

  #key(id: string): Buffer {
    const key = this.#keys.get(id);
    if (!key) throw new EncryptionError(ErrorCode.ENCRYPTION_KEY_MISSING, `master key '${id}' is not in encryption.keys: add it to read data it wraps`);
    return key;
  }

  #checkCurrent(id: unknown): string {
    if (typeof id !== 'string' || !this.#keys.has(id)) {
      throw new ConfigurationError(
        ErrorCode.ENCRYPTION_KEY_MISSING,
        `encryption current key ${JSON.stringify(typeof id === 'string' ? id.slice(0, 80) : id)} is not in encryption.keys`,
      );
    }
    return id;
  }
}

/** A wrapped data key is bound to its user and id: a wrap copied to another user does not open. */
function wrapAad(user: string, id: string): Buffer {
  return Buffer.from(`tcs:dk:v1\0${user}\0${id}`, 'utf8');
}

function invalid(message: string): ConfigurationError {
  return new ConfigurationError(ErrorCode.INVALID_OPTION, message);
}

/**
 * A data key as this process holds it: unwrapped, the id of the delete that destroyed it, or why it
 * cannot be unwrapped (its master key is not configured): that error is thrown only when a value
 * under that key is read, so the user's other keys still open.
 */
export type HeldKey = Buffer | { destroyed: string } | { unusable: EncryptionError };

/** One user's known data keys in this process. */
interface UserKeys {
  /** The key new values are sealed with: the newest live one. */
  current: { id: string; key: Buffer } | undefined;
  byId: Map<string, HeldKey>;
  /** When the tier was last asked (ms). */
  loadedAt: number;
}

const MAX_CACHED_USERS = 10_000;
/** How long a cached key seals new values before the tier is asked again whether it is still live. */
const REVALIDATE_MS = 30_000;

/**
 * The data keys of one tier, with an in-process cache of unwrapped keys (bounded; the oldest user
 * goes first). A user with no key gets one on their first sealed write: 32 random bytes, id from
 * the op id generator, wrapped by the current master key and saved in the tier before anything is
 * sealed with it. Keys of several processes made at once for one user all stay readable.
 */
export class DataKeys {
  readonly #users = new Map<string, UserKeys>();
  readonly #loading = new Map<string, Promise<UserKeys>>();
  readonly #creating = new Map<string, Promise<{ id: string; key: Buffer }>>();

  constructor(
    readonly ring: KeyRing,
    readonly store: DataKeyStore,
  ) {}

  /** forWrite's answer when it is at hand (no call to the tier): the hot path. */
  peekWrite(user: string, after = ''): { id: string; key: Buffer } | undefined {
    const known = this.#users.get(user);
    return known?.current && known.current.id > after && Date.now() - known.loadedAt < REVALIDATE_MS ? known.current : undefined;
  }

  /** The key `id` of the user if this process holds it (or knows it destroyed); undefined: ask forRead. */
  peek(user: string, id: string): HeldKey | undefined {
    return this.#users.get(user)?.byId.get(id);
  }

  /**
   * The key to seal the user's new values with: the newest live one, made and saved when there is
   * none. `after`: the key's id must be above it (values written after a delete with that id must
   * not be sealed with a key the delete destroys). A cached key is looked up again after
   * REVALIDATE_MS, so a process stops using a key another process's deleteUser destroyed.
   */
  async forWrite(user: string, after = ''): Promise<{ id: string; key: Buffer }> {
    for (;;) {
      const known = this.peekWrite(user, after);
      if (known) return known;
      const creating = this.#creating.get(user);
      if (!creating) {
        const made = this.#create(user, after).finally(() => this.#creating.delete(user));
        this.#creating.set(user, made);
        return made;
      }
      const made = await creating;
      if (made.id > after) return made;
    }
  }

  async #create(user: string, after: string): Promise<{ id: string; key: Buffer }> {
    const known = await this.#load(user, true);
    if (known.current && known.current.id > after) return known.current;
    const key = randomBytes(32);
    const next = nextId();
    // Above `after` even when the delete came from a process whose clock runs ahead.
    const id = next > after ? next : `${after}z`;
    await this.store.saveDataKey(user, this.ring.wrap(user, id, key));
    known.byId.set(id, key);
    known.current = { id, key };
    return known.current;
  }

  /** The key `id` of the user, or the id of the delete that destroyed it; DATA_KEY_DESTROYED when the tier has no such key. */
  async forRead(user: string, id: string): Promise<HeldKey> {
    let known = this.#users.get(user);
    let key = known?.byId.get(id);
    if (key === undefined) {
      // Another process may have made it since this one looked.
      known = await this.#load(user, true);
      key = known.byId.get(id);
    }
    if (key === undefined) {
      throw new EncryptionError(
        ErrorCode.DATA_KEY_DESTROYED,
        `data key ${id} is not one of user ${user}'s keys: destroyed, or the value was moved from another user`,
      );
    }
    return key;
  }

  /** Forgets the user's keys here (after a delete destroyed them in the tier). */
  forget(user: string): void {
    this.#users.delete(user);
  }

  #load(user: string, again = false): Promise<UserKeys> {
    const inflight = this.#loading.get(user);
    if (inflight && !again) return inflight;
    const loading = this.store
      .readDataKeys(user)
      .then((records) => {
        const keys: UserKeys = { current: undefined, byId: new Map(), loadedAt: Date.now() };
        for (const record of records) {
          if (record.destroyed !== undefined) {
            keys.byId.set(record.id, { destroyed: record.destroyed });
            continue;
          }
          let key: Buffer;
          try {
            key = this.ring.unwrap(user, record);
          } catch (error) {
            keys.byId.set(record.id, { unusable: error as EncryptionError });
            continue;
          }
          keys.byId.set(record.id, key);
          if (!keys.current || keys.current.id < record.id) keys.current = { id: record.id, key };
        }
        if (this.#users.size >= MAX_CACHED_USERS && !this.#users.has(user)) {
          const oldest = this.#users.keys().next();
          if (!oldest.done) this.#users.delete(oldest.value);
        }
        this.#users.set(user, keys);
        return keys;
      })
      .finally(() => {
        if (this.#loading.get(user) === loading) this.#loading.delete(user);
      });
    this.#loading.set(user, loading);
    return loading;
  }
}
