import type {
  AdapterConfig,
  CacheMiss,
  DeadLetterRecord,
  HistoryRead,
  HistoryReadOptions,
  ReadOptions,
  StorageAdapter,
  ThreadRecordPage,
  UserRecord,
  WriteOutcome,
} from '../adapters/contract.js';
import { isMiss } from '../adapters/contract.js';
import type { CacheAdapter, JournalEntry } from '../cache/contract.js';
import { ConfigurationError, EncryptionError, ErrorCode } from '../errors.js';
import { defaultTokens } from '../model/budget.js';
import type { Op, SummaryRecord } from '../model/ops.js';
import type { JsonObject, Message } from '../types.js';
import { isSealed, open, type SealedField, seal, sealedKeyId } from './cipher.js';
import { DataKeys, isDataKeyStore, type KeyRing } from './keys.js';

/** How a sealed JSON value (meta, booking) is stored where an object is expected. */
const SEALED_JSON = '$enc';

/**
 * A tier behind encryption at rest: a decorator of its adapter that seals the personal fields of
 * every op it writes (content, meta, phone, booking, titles, summaries) under the user's data key
 * in that tier, and opens what reads return (histories, messages, users, threads, summaries,
 * journal entries). Everything else passes through, so routing, the hot-cache protocol, the
 * syncer and the codecs see plaintext above it and ciphertext below it; the RAM tier and the RAM
 * journal, which are process memory, stay plaintext. The tier keeps its own data keys next to
 * what they seal, so the syncer opens a journal entry with Redis's key and seals it again with
 * PostgreSQL's: no key has to travel ahead of the data.
 *
 * A delete op destroys the user's keys in the tier once the tier applied it, so copies made
 * earlier (backups, persistence files, rows put back) no longer open: DATA_KEY_DESTROYED.
 */
export class SealedAdapter implements CacheAdapter {
  readonly #inner: CacheAdapter;
  readonly keys: DataKeys;
  readonly #ring: KeyRing;
  /** Values this process opened, by ciphertext: a hot copy read again is not decrypted again. */
  readonly #opened = new OpenedValues();

  leaseSummary?: NonNullable<StorageAdapter['leaseSummary']>;
  releaseSummary?: NonNullable<StorageAdapter['releaseSummary']>;
  enforceRetention?: NonNullable<StorageAdapter['enforceRetention']>;
  streamingDrafts?: NonNullable<StorageAdapter['streamingDrafts']>;
  recordDeadLetter?: NonNullable<StorageAdapter['recordDeadLetter']>;
  describe?: NonNullable<StorageAdapter['describe']>;
  secrets?: NonNullable<StorageAdapter['secrets']>;
  draftProgress?: NonNullable<CacheAdapter['draftProgress']>;
  staleDrafts?: NonNullable<CacheAdapter['staleDrafts']>;
  ackMany?: NonNullable<CacheAdapter['ackMany']>;
  /** The inner Redis's feed of changed keys (key names only, nothing sealed): L1 runs above the seal. */
  invalidations?: NonNullable<CacheAdapter['invalidations']>;

  constructor(inner: StorageAdapter, ring: KeyRing) {
    if (!isDataKeyStore(inner)) {
      throw new ConfigurationError(
        ErrorCode.INVALID_OPTION,
        `encryption needs adapters that keep data keys (RedisAdapter, PostgresAdapter); ${inner.name} does not`,
      );
    }
    this.#inner = inner as unknown as CacheAdapter;
    this.#ring = ring;
    this.keys = new DataKeys(ring, inner);
    const a = this.#inner;
    if (a.leaseSummary) this.leaseSummary = (user, thread, token, ttlMs) => a.leaseSummary!(user, thread, token, ttlMs);
    if (a.releaseSummary) this.releaseSummary = (user, thread, token) => a.releaseSummary!(user, thread, token);
    if (a.enforceRetention) this.enforceRetention = (rule) => a.enforceRetention!(rule);
    if (a.describe) this.describe = () => `${a.describe!()} (encrypted)`;
    if (a.secrets) this.secrets = () => a.secrets!();
    if (a.staleDrafts) this.staleDrafts = (before, limit) => a.staleDrafts!(before, limit);
    if (a.ackMany) this.ackMany = (acks) => a.ackMany!(acks);
    if (a.invalidations) this.invalidations = (listener) => a.invalidations!(listener);
    if (a.streamingDrafts) {
      this.streamingDrafts = async (before, limit) => {
        const drafts = await a.streamingDrafts!(before, limit);
        return this.#opening(() => drafts.map(({ user, message }) => ({ user, message: this.#openMessage(user, message) })));
      };
    }
    if (a.draftProgress) {
      this.draftProgress = async (user, id) => {
        const found = await a.draftProgress!(user, id);
        return found && { message: await this.#opening(() => this.#openMessage(user, found.message)), at: found.at };
      };
    }
    if (a.recordDeadLetter) {
      this.recordDeadLetter = async (letter) => a.recordDeadLetter!(await this.#sealLetter(letter));
    }
  }

  get name(): string {
    return this.#inner.name;
  }

  get timeoutMs(): number {
    return this.#inner.timeoutMs;
  }

  bind(config: AdapterConfig): void {
    this.#inner.bind(config);
    this.#cache = config.role === 'cache';
  }

  /**
   * In the cache role a copy that does not open (plaintext filled before encryption was on, a value
   * tampered with or moved from another user) is only a copy: it is dropped and read as a miss, so
   * the next read fills a good one from PostgreSQL (the hot-cache protocol never fails a read on a
   * cache error either; it reads PostgreSQL).
   */
  #cache = false;

  async #dropUnreadable<T>(user: string, read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      if (!this.#cache || !(error instanceof EncryptionError)) throw error;
      await this.#inner.invalidate([user], false);
      return read();
    }
  }

  connect(): Promise<void> {
    return this.#inner.connect();
  }

  ping(): Promise<void> {
    return this.#inner.ping();
  }

  isUnavailable(error: unknown): boolean {
    return !(error instanceof EncryptionError) && this.#inner.isUnavailable(error);
  }

  reset(): Promise<void> {
    return this.#inner.reset();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  // ---- writes

  async write(ops: readonly Op[], options?: { pending?: boolean }): Promise<WriteOutcome[]> {
    // A user's ops after a delete in the same batch get a key newer than it (the delete destroys the older ones).
    const deleted = new Map<string, string>();
    for (const op of ops) if (op.kind === 'delete' && op.id > (deleted.get(op.user) ?? '')) deleted.set(op.user, op.id);
    const sealed = await Promise.all(
      ops.map((op) => {
        const floor = deleted.get(op.user);
        return this.sealOp(op, floor !== undefined && op.id > floor ? floor : '');
      }),
    );
    const outcomes = (await this.#inner.write(sealed, options)) as WriteOutcome[];
    // Crypto-shredding: once the tier applied the delete, the keys of everything it erased go.
    for (const op of ops) {
      if (op.kind !== 'delete') continue;
      await this.shred(op.user, op.id);
      await this.onShred?.(op.user, op.id);
    }
    return outcomes;
  }

  /**
   * Called after this tier shredded a user: the store destroys the user's keys in the other tier
   * too (a delete that reaches PostgreSQL from this process's RAM journal, or with Redis away, never
   * reaches Redis as an op).
   */
  onShred: ((user: string, upTo: string) => Promise<void>) | undefined;

  /** Destroys the user's data keys with ids at or below `upTo` in this tier, and forgets what this process held of them. */
  async shred(user: string, upTo: string): Promise<void> {
    await this.keys.store.destroyDataKeys(user, upTo);
    this.keys.forget(user);
    this.#opened.clear();
  }

  fillHistory(user: string, version: string, messages: readonly Message[], thread?: string): Promise<boolean> {
    return this.#sealMessages(user, messages).then((sealed) => this.#inner.fillHistory(user, version, sealed, thread));
  }

  async fillUser(user: string, version: string, record: UserRecord): Promise<boolean> {
    // No key is made for a user with nothing to seal (reads of unknown users fill copies too).
    const key = record.phone.value === null && record.booking.value === null ? undefined : await this.keys.forWrite(user);
    const phone = key === undefined || record.phone.value === null ? null : seal(key.key, key.id, user, 'phone', record.phone.value);
    const booking = key === undefined || record.booking.value === null ? null : this.#sealJson(key, user, 'booking', record.booking.value);
    return this.#inner.fillUser(user, version, { ...record, phone: { ...record.phone, value: phone }, booking: { ...record.booking, value: booking } });
  }

  fillSubscribers(version: string, users: readonly string[]): Promise<boolean> {
    return this.#inner.fillSubscribers(version, users);
  }

  invalidate(users: Iterable<string>, subscribers: boolean): Promise<void> {
    return this.#inner.invalidate(users, subscribers);
  }

  invalidateAll(): Promise<void> {
    return this.#inner.invalidateAll();
  }

  // ---- reads

  readHistory(user: string, limit: number, options?: HistoryReadOptions): Promise<HistoryRead | CacheMiss> {
    return this.#dropUnreadable(user, async () => {
      const read = await this.#inner.readHistory(user, limit, options);
      if (isMiss(read)) return { ...read, pending: await this.#openOps(read.pending) };
      return { ...read, messages: await this.#openMessages(user, read.messages) };
    });
  }

  readMessage(user: string, id: string): Promise<Message | null> {
    return this.#dropUnreadable(user, async () => {
      const message = await this.#inner.readMessage(user, id);
      return message && this.#opening(() => this.#openMessage(user, message));
    });
  }

  async listThreads(user: string, limit: number, cursor: string | null): Promise<ThreadRecordPage> {
    const page = await this.#inner.listThreads(user, limit, cursor);
    return this.#opening(() => ({
      ...page,
      threads: page.threads.map((t) => (t.title === null ? t : { ...t, title: this.#openText(user, 'title', t.title) })),
    }));
  }

  async readSummary(user: string, thread: string, options?: ReadOptions): Promise<SummaryRecord | null> {
    const summary = await this.#inner.readSummary(user, thread, options);
    return summary && this.#opening(() => ({ ...summary, text: this.#openText(user, 'summary', summary.text) }));
  }

  readUser(user: string, options?: ReadOptions): Promise<UserRecord | CacheMiss> {
    return this.#dropUnreadable(user, async () => {
      const record = await (this.#inner as StorageAdapter).readUser(user, options);
      if (isMiss(record)) return { ...record, pending: await this.#openOps(record.pending) };
      return this.#opening(() => {
        const phone = record.phone.value === null ? null : this.#openText(user, 'phone', record.phone.value);
        const booking = record.booking.value === null ? null : this.#openJson(user, 'booking', record.booking.value);
        return { ...record, phone: { ...record.phone, value: phone }, booking: { ...record.booking, value: booking } };
      });
    });
  }

  readSubscribers(options?: ReadOptions): Promise<string[] | CacheMiss> {
    return (this.#inner as StorageAdapter).readSubscribers(options);
  }

  isSubscriber(user: string): Promise<boolean | CacheMiss> {
    return this.#inner.isSubscriber(user);
  }

  // ---- the journal (cache role)

  async readPending(user: string): Promise<Op[]> {
    return this.#openOps(await this.#inner.readPending(user));
  }

  pendingUsers(count: number): Promise<string[]> {
    return this.#inner.pendingUsers(count);
  }

  async readJournals(users: readonly string[], perUser: number): Promise<Map<string, JournalEntry[]>> {
    const journals = await this.#inner.readJournals(users, perUser);
    const opened = new Map<string, JournalEntry[]>();
    for (const [user, entries] of journals) {
      opened.set(
        user,
        await Promise.all(
          entries.map(async (entry): Promise<JournalEntry> => {
            if (!entry.op) return entry;
            try {
              return { op: await this.openOp(entry.op, true), raw: entry.raw };
            } catch (error) {
              return { op: undefined, error: error as Error, raw: entry.raw };
            }
          }),
        ),
      );
    }
    return opened;
  }

  ack(user: string, entries: readonly string[]): Promise<number> {
    return this.#inner.ack(user, entries);
  }

  indexJournals(): Promise<number> {
    return this.#inner.indexJournals();
  }

  pendingCount(): Promise<number> {
    return this.#inner.pendingCount();
  }

  acquireLease(token: string, ttlMs: number): Promise<boolean> {
    return this.#inner.acquireLease(token, ttlMs);
  }

  releaseLease(token: string): Promise<void> {
    return this.#inner.releaseLease(token);
  }

  runId(): Promise<string> {
    return this.#inner.runId();
  }

  onReady(listener: () => void): void {
    this.#inner.onReady(listener);
  }

  // ---- sealing and opening

  /** One value of `field` sealed for `user` (encrypt-existing); a JSON field takes an object. */
  async sealValue(user: string, field: SealedField, value: string | JsonObject): Promise<string | JsonObject> {
    const key = await this.keys.forWrite(user);
    return typeof value === 'string' ? seal(key.key, key.id, user, field, value) : this.#sealJson(key, user, field, value);
  }

  /** The op with its personal fields sealed; a message's token count is fixed first (it cannot be counted from ciphertext). */
  async sealOp(op: Op, after = ''): Promise<Op> {
    if (!carriesPersonalData(op)) return op;
    const key = this.keys.peekWrite(op.user, after) ?? (await this.keys.forWrite(op.user, after));
    const text = (field: SealedField, value: string) => seal(key.key, key.id, op.user, field, value);
    const out = mapPersonal(op, text, (field, value) => this.#sealJson(key, op.user, field, value));
    // mapPersonal made a new object of an append or an edit: the count of the plaintext goes in it.
    if ((out.kind === 'append' || out.kind === 'edit') && out.tokens === undefined) out.tokens = defaultTokens(op as { content: string });
    return out;
  }

  /**
   * The op with its fields opened. `inTransit` (a journal entry): plaintext is taken (ops a process
   * without encryption journaled during a rollout must not be lost), and a value whose key a later
   * delete destroyed opens as empty (that delete erases the op's effect anyway).
   */
  openOp(op: Op, inTransit = false): Promise<Op> {
    return this.#opening(() => this.#openOp(op, inTransit));
  }

  #openOp(op: Op, inTransit: boolean): Op {
    const opId = inTransit ? op.id : undefined;
    const text = (field: SealedField, value: string) => this.#openText(op.user, field, value, opId);
    return mapPersonal(op, text, (field, value) => this.#openJson(op.user, field, value, opId));
  }

  #openOps(ops: readonly Op[]): Promise<Op[]> {
    return this.#opening(() => ops.map((op) => this.#openOp(op, true)));
  }

  #openMessage(user: string, message: Message): Message {
    const out = { ...message, content: this.#openText(user, 'content', message.content) };
    if (message.meta !== undefined) out.meta = this.#openJson(user, 'meta', message.meta);
    return out;
  }

  #openMessages(user: string, messages: readonly Message[]): Promise<Message[]> {
    return this.#opening(() => messages.map((m) => this.#openMessage(user, m)));
  }

  /**
   * Runs `open` (synchronous: the hot path awaits nothing); when it needs a data key this process
   * does not hold yet, loads the user's keys from the tier and runs it again.
   */
  async #opening<T>(open: () => T): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return open();
      } catch (error) {
        if (!(error instanceof KeyNotHeld) || attempt >= 100) throw error;
        await this.keys.forRead(error.user, error.id);
      }
    }
  }

  async #sealMessages(user: string, messages: readonly Message[]): Promise<Message[]> {
    if (messages.length === 0) return [];
    const key = this.keys.peekWrite(user) ?? (await this.keys.forWrite(user));
    return messages.map((m) => {
      const out = { ...m, content: seal(key.key, key.id, user, 'content', m.content) };
      if (m.meta !== undefined) out.meta = this.#sealJson(key, user, 'meta', m.meta);
      return out;
    });
  }

  #sealJson(key: { id: string; key: Buffer }, user: string, field: SealedField, value: JsonObject): JsonObject {
    return { [SEALED_JSON]: seal(key.key, key.id, user, field, JSON.stringify(value)) };
  }

  #openJson(user: string, field: SealedField, value: JsonObject, opId?: string): JsonObject {
    const sealed = value[SEALED_JSON];
    if (typeof sealed !== 'string' || Object.keys(value).length !== 1) {
      this.#plaintext(user, field, opId);
      return value;
    }
    const text = this.#openText(user, field, sealed, opId);
    return text === '' ? {} : (JSON.parse(text) as JsonObject);
  }

  /**
   * `value` opened (from the cache of opened values when it was opened before); with `opId` (an op
   * in transit), plaintext passes and a value shredded by a later delete opens as ''. Throws
   * KeyNotHeld when its data key must be loaded first.
   */
  #openText(user: string, field: SealedField, value: string, opId?: string): string {
    if (!isSealed(value)) {
      this.#plaintext(user, field, opId);
      return value;
    }
    const known = this.#opened.get(value, user, field);
    if (known !== undefined) return known;
    const id = sealedKeyId(value);
    const key = this.keys.peek(user, id);
    if (key === undefined) throw new KeyNotHeld(user, id);
    if (Buffer.isBuffer(key)) {
      const text = open(key, user, field, value);
      this.#opened.set(value, user, field, text);
      return text;
    }
    if ('unusable' in key) throw key.unusable;
    if (opId !== undefined && opId <= key.destroyed) return '';
    throw new EncryptionError(ErrorCode.DATA_KEY_DESTROYED, `the ${field} of user ${user} is under a data key destroyed by deleteUser (op ${key.destroyed})`);
  }

  #plaintext(user: string, field: SealedField, opId: string | undefined): void {
    if (opId !== undefined || this.#ring.allowPlaintext) return;
    throw new EncryptionError(
      ErrorCode.PLAINTEXT_REFUSED,
      `the ${field} of user ${user} is stored as plaintext and encryption.allowPlaintext is not set (run encrypt-existing)`,
    );
  }

  async #sealLetter(letter: DeadLetterRecord): Promise<DeadLetterRecord> {
    if (letter.kind === 'unreadable') return letter;
    try {
      return { ...letter, entry: JSON.stringify(await this.sealOp(JSON.parse(letter.entry) as Op)) };
    } catch {
      return { ...letter, entry: '(sealed op could not be kept)' };
    }
  }
}

/** Whether a stored value (string, or object for meta and booking) is sealed. */
export function isSealedValue(value: string | JsonObject): boolean {
  return typeof value === 'string' ? isSealed(value) : typeof value[SEALED_JSON] === 'string';
}

/** Whether an op carries a sealed value (read raw from a journal by a process without the keys). */
export function isSealedOp(op: Op): boolean {
  switch (op.kind) {
    case 'append':
    case 'edit':
      return isSealed(op.content) || (op.meta != null && isSealedValue(op.meta));
    case 'title':
      return op.title !== null && isSealed(op.title);
    case 'phone':
      return op.phone !== null && isSealed(op.phone);
    case 'booking':
      return op.booking != null && isSealedValue(op.booking);
    case 'summary':
      return isSealed(op.text);
    default:
      return false;
  }
}

/** A value's data key is not held by this process yet (SealedAdapter loads it and tries again). */
class KeyNotHeld extends Error {
  constructor(
    readonly user: string,
    readonly id: string,
  ) {
    super(`data key ${id} of user ${user} is not loaded`);
  }
}

/** The op with each personal field passed through `text` or `json` (sealing or opening); other fields and kinds as they are. */
function mapPersonal(op: Op, text: (field: SealedField, value: string) => string, json: (field: SealedField, value: JsonObject) => JsonObject): Op {
  switch (op.kind) {
    case 'append':
    case 'edit': {
      const out = { ...op, content: text('content', op.content) };
      if (op.meta !== undefined) out.meta = json('meta', op.meta);
      return out;
    }
    case 'title':
      return op.title === null ? op : { ...op, title: text('title', op.title) };
    case 'phone':
      return op.phone === null ? op : { ...op, phone: text('phone', op.phone) };
    case 'booking':
      return op.booking === null ? op : { ...op, booking: json('booking', op.booking) };
    case 'summary':
      return { ...op, text: text('summary', op.text) };
    default:
      return op;
  }
}

/** Whether an op has a field that is sealed (a null title, phone or booking is not). */
function carriesPersonalData(op: Op): boolean {
  switch (op.kind) {
    case 'append':
    case 'edit':
    case 'summary':
      return true;
    case 'title':
      return op.title !== null;
    case 'phone':
      return op.phone !== null;
    case 'booking':
      return op.booking !== null;
    default:
      return false;
  }
}

const OPENED_MAX_CHARS = 4 * 1024 * 1024;
/** base64url characters of the 16-byte tag at a ciphertext's end. */
const TAIL = 21;

/**
 * Plaintexts of ciphertexts this process opened, bounded by their total length (oldest dropped
 * first). A ciphertext is unique (a random IV each), so it names one value; the user and field it
 * was opened for are checked, so the binding holds for a hit too. Cleared on any delete.
 */
class OpenedValues {
  /** By the ciphertext's tail (its authentication tag: hashing it is cheaper than the whole), holding the whole to compare. */
  readonly #map = new Map<string, { value: string; user: string; field: SealedField; text: string }>();
  #chars = 0;

  get(value: string, user: string, field: SealedField): string | undefined {
    const hit = this.#map.get(value.slice(-TAIL));
    return hit && hit.value === value && hit.user === user && hit.field === field ? hit.text : undefined;
  }

  set(value: string, user: string, field: SealedField, text: string): void {
    const tail = value.slice(-TAIL);
    if (this.#map.has(tail)) return;
    this.#map.set(tail, { value, user, field, text });
    this.#chars += value.length + text.length;
    while (this.#chars > OPENED_MAX_CHARS) {
      const oldest = this.#map.entries().next();
      if (oldest.done) break;
      this.#map.delete(oldest.value[0]);
      this.#chars -= oldest.value[1].value.length + oldest.value[1].text.length;
    }
  }

  clear(): void {
    this.#map.clear();
    this.#chars = 0;
  }
}
