import { mergeHistory, type Op } from '../model/ops.js';
import { opBytes } from '../model/sizes.js';
import type { UserRecord } from '../adapters/contract.js';
import type { JsonValue, Message } from '../types.js';

/** Counters of the in-process tier since the store started (see `stats().l1`). */
export interface L1Stats {
  /** Whether the store runs an in-process tier (off: `l1: false`, no Redis, an adapter without a feed, Redis refused tracking). */
  enabled: boolean;
  /** Reads served from process memory. */
  hits: number;
  /** Reads it could have served but held no serving copy for. */
  misses: number;
  /** Copies dropped to stay within `maxBytes`. */
  evictions: number;
  /** Estimated bytes held (serving copies and last-known ones). */
  bytes: number;
  /** Copies held (serving and last-known). */
  entries: number;
  /** Users whose copies stopped serving because a write (here or in another process) changed them. */
  invalidations: number;
  /** Reads answered with Redis and PostgreSQL both unreachable from a last-known copy (stale-if-error). */
  staleServes: number;
}

/** Estimated heap bytes of one message held: a measured fixed cost plus its text (1 byte a character for Latin-1, else 2). */
export const MESSAGE_OVERHEAD_BYTES = 256;
const ENTRY_OVERHEAD_BYTES = 200;
/** Own writes remembered per last-known copy (for stale-if-error); past it the copy is dropped. */
const MAX_OPS_PER_ENTRY = 1000;
/** Users whose invalidation time is remembered for fills in flight; past it every fill in flight is refused instead. */
const MAX_REMEMBERED_USERS = 10_000;
/** Most messages a last-known copy keeps from a longer read (a serving copy keeps `historyLimit`). */
const MAX_KNOWN_MESSAGES = 1000;
const WIDE = /[\u0100-\uffff]/;

export function messageBytes(m: Message): number {
  const text = (s: string) => (WIDE.test(s) ? s.length * 2 : s.length);
  return MESSAGE_OVERHEAD_BYTES + text(m.content) + (m.meta === undefined ? 0 : JSON.stringify(m.meta).length * 3);
}

/** What a read captured before going to Redis: a fill is refused if anything invalidated the user since. */
export interface L1Ticket {
  readonly at: number;
}

interface Entry {
  user: string;
  thread: string;
  /** The thread's newest `historyLimit` messages (all of them when it has fewer), oldest first. */
  messages: Message[];
  bytes: number;
  /** Served to normal reads only while true; false: a last-known copy kept for stale-if-error. */
  serving: boolean;
  /** This process's writes to the user since the copy was made, laid over it when it is served stale. */
  after: Op[];
  /** A copy of the user's phone and booking (its `messages` are then empty). */
  record?: UserRecord;
}

/** The entry key of a user's phone and booking (no thread name holds this character). */
const USER_FIELDS = '\u0001';

/**
 * The in-process tier: complete copies of threads' newest `historyLimit` messages (the rule of
 * Redis's copies), bounded by estimated bytes with least-recently-used eviction. It serves only
 * while its invalidation feed is live (see `setLive`); every invalidation, own write or doubt about
 * the feed stops copies from serving, but keeps them as last-known copies for stale-if-error.
 * Fills are guarded by a clock: a read takes a ticket before it goes to Redis, and its fill is
 * refused if the user was invalidated (or everything dropped) after the ticket was taken.
 */
export class L1 {
  readonly #entries = new Map<string, Entry>();
  readonly #byUser = new Map<string, Set<string>>();
  /** When each user was last invalidated (clock ticks), for fills in flight. */
  readonly #invalidatedAt = new Map<string, number>();
  /** Fills with a ticket older than this are refused (everything dropped, or the map above was cleared). */
  #floor = 0;
  #clock = 0;
  #live = false;
  #off = false;
  /** Checked at each read: the feed was heard from lately. */
  #heard: () => boolean = () => true;
  #bytes = 0;
  readonly counts = { hits: 0, misses: 0, evictions: 0, invalidations: 0, staleServes: 0 };

  constructor(
    readonly maxBytes: number,
    readonly historyLimit: number,
  ) {}

  /** A check run at each read and fill on top of `live` (the feed heard from lately). */
  gate(heard: () => boolean): void {
    this.#heard = heard;
  }

  /** Serving on (the feed is subscribed and Redis is up) or off; either way every copy stops serving (the feed may have missed messages). */
  setLive(live: boolean): void {
    this.dropAll();
    this.#live = live && !this.#off;
  }

  /** For good (its feed cannot work): nothing serves, only last-known copies are kept. */
  turnOff(): void {
    this.#off = true;
    this.setLive(false);
  }

  stats(): L1Stats {
    return { enabled: !this.#off, ...this.counts, bytes: this.#bytes, entries: this.#entries.size };
  }

  /** The figures of a store without an in-process tier. */
  static off(): L1Stats {
    return { enabled: false, hits: 0, misses: 0, evictions: 0, bytes: 0, entries: 0, invalidations: 0, staleServes: 0 };
  }

  /** The newest `limit` messages from a serving copy (copies of the held messages), or undefined (counted as a miss). */
  history(user: string, thread: string, limit: number): Message[] | undefined {
    const key = keyOf(user, thread);
    const entry = this.#live && this.#heard() ? this.#entries.get(key) : undefined;
    if (!entry?.serving || limit > this.historyLimit) {
      this.counts.misses++;
      return undefined;
    }
    this.counts.hits++;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    const from = Math.max(0, entry.messages.length - limit);
    const out = new Array<Message>(entry.messages.length - from);
    for (let i = from; i < entry.messages.length; i++) out[i - from] = copy(entry.messages[i] as Message);
    return out;
  }

  /** The user's phone and booking from a serving copy (subscription not included), or undefined (a miss). */
  user(user: string): UserRecord | undefined {
    const key = keyOf(user, USER_FIELDS);
    const entry = this.#live && this.#heard() ? this.#entries.get(key) : undefined;
    if (!entry?.serving || !entry.record) {
      this.counts.misses++;
      return undefined;
    }
    this.counts.hits++;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return copyRecord(entry.record);
  }

  /** Keeps the user's phone and booking, by the rules of `fill`. */
  fillUser(ticket: L1Ticket | undefined, user: string, record: UserRecord): boolean {
    const serving = this.#fresh(ticket, user);
    const key = keyOf(user, USER_FIELDS);
    const previous = this.#entries.get(key);
    if (!serving && previous?.serving) return false;
    const after = serving ? [] : (previous?.after ?? []);
    let bytes = ENTRY_OVERHEAD_BYTES + (record.phone.value?.length ?? 0) + JSON.stringify(record.booking.value).length * 3;
    for (const op of after) bytes += opBytes(op);
    this.#remove(key);
    if (bytes > this.maxBytes) return false;
    this.#insert({ user, thread: USER_FIELDS, messages: [], bytes, serving, after, record: copyRecord(record) });
    return serving;
  }

  /** The last phone and booking this process knew, with its own writes since (stale-if-error). */
  lastKnownUser(user: string): { record: UserRecord; after: Op[] } | undefined {
    const entry = this.#entries.get(keyOf(user, USER_FIELDS));
    return entry?.record && { record: copyRecord(entry.record), after: [...entry.after] };
  }

  /** A ticket for a fill, or undefined while not serving (nothing read now may be kept). */
  ticket(): L1Ticket | undefined {
    return this.#live && this.#heard() ? { at: this.#clock } : undefined;
  }

  /**
   * Keeps a complete read of the thread's newest messages: its newest `historyLimit` as a serving
   * copy when the read had a ticket and nothing invalidated the user since it was taken, else (up
   * to `MAX_KNOWN_MESSAGES` of them) as a last-known copy only (stale-if-error), which replaces none
   * that serves. Resolves whether it serves.
   */
  fill(ticket: L1Ticket | undefined, user: string, thread: string, window: readonly Message[]): boolean {
    const serving = this.#fresh(ticket, user);
    const key = keyOf(user, thread);
    const previous = this.#entries.get(key);
    if (!serving && previous?.serving) return false;
    // A read that may predate this process's writes keeps them (laid over it again, they change nothing it has).
    const after = serving ? [] : (previous?.after ?? []);
    const most = serving ? this.historyLimit : Math.max(this.historyLimit, MAX_KNOWN_MESSAGES);
    const messages = (window.length > most ? window.slice(-most) : window).map(copy);
    let bytes = ENTRY_OVERHEAD_BYTES;
    for (const op of after) bytes += opBytes(op);
    for (const m of messages) {
      if (m.meta !== undefined) deepFreeze(m.meta);
      bytes += messageBytes(m);
    }
    this.#remove(key);
    if (bytes > this.maxBytes) return false;
    this.#insert({ user, thread, messages, bytes, serving, after });
    return serving;
  }

  /** The last copy this process knew of the thread with its own writes since laid over it, serving or not (stale-if-error). */
  lastKnown(user: string, thread: string): { messages: Message[]; after: Op[] } | undefined {
    const entry = this.#entries.get(keyOf(user, thread));
    return entry && { messages: entry.messages.map(copy), after: [...entry.after] };
  }

  /** Counts a read served from a last-known copy. */
  servedStale(): void {
    this.counts.staleServes++;
  }

  /**
   * This process wrote `ops` (acknowledged or not): the user's copies stop serving (the next read
   * refills from Redis), fills in flight are refused, and the ops are remembered on the copies
   * for stale-if-error. An erasure drops the user's copies outright.
   */
  wrote(ops: readonly Op[]): void {
    for (const op of ops) {
      this.#invalidate(op.user, false);
      const keys = this.#byUser.get(op.user);
      if (!keys) continue;
      for (const key of [...keys]) {
        const entry = this.#entries.get(key) as Entry;
        if (op.kind === 'delete' || entry.after.length >= MAX_OPS_PER_ENTRY) {
          this.#remove(key);
          continue;
        }
        entry.after.push(op);
        entry.bytes += opBytes(op);
        this.#bytes += opBytes(op);
      }
    }
    this.#evict();
  }

  /** Another process (or this one) changed these users in Redis: their copies stop serving. */
  invalidate(users: Iterable<string>): void {
    for (const user of users) this.#invalidate(user, true);
  }

  /** Every copy stops serving (kept as last-known) and every fill in flight is refused. */
  dropAll(): void {
    this.#clock++;
    this.#floor = this.#clock;
    this.#invalidatedAt.clear();
    for (const entry of this.#entries.values()) entry.serving = false;
  }

  /** Whether a read that took `ticket` may leave a serving copy of `user`: serving, and nothing invalidated the user since. */
  #fresh(ticket: L1Ticket | undefined, user: string): boolean {
    return ticket !== undefined && this.#live && ticket.at >= this.#floor && (this.#invalidatedAt.get(user) ?? -1) <= ticket.at;
  }

  #invalidate(user: string, counted: boolean): void {
    this.#clock++;
    if (this.#invalidatedAt.size >= MAX_REMEMBERED_USERS && !this.#invalidatedAt.has(user)) {
      this.#invalidatedAt.clear();
      this.#floor = this.#clock;
    }
    this.#invalidatedAt.set(user, this.#clock);
    const keys = this.#byUser.get(user);
    if (!keys) return;
    let dropped = false;
    for (const key of keys) {
      const entry = this.#entries.get(key) as Entry;
      dropped ||= entry.serving;
      entry.serving = false;
    }
    if (dropped && counted) this.counts.invalidations++;
  }

  #insert(entry: Entry): void {
    const key = keyOf(entry.user, entry.thread);
    this.#entries.set(key, entry);
    const keys = this.#byUser.get(entry.user) ?? new Set<string>();
    this.#byUser.set(entry.user, keys);
    keys.add(key);
    this.#bytes += entry.bytes;
    this.#evict();
  }

  #remove(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
    const keys = this.#byUser.get(entry.user);
    keys?.delete(key);
    if (keys?.size === 0) this.#byUser.delete(entry.user);
  }

  #evict(): void {
    while (this.#bytes > this.maxBytes) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) return;
      this.#remove(oldest.value);
      this.counts.evictions++;
    }
  }
}

/**
 * A last-known copy with the writes made since: the copy's messages and what RAM holds (the
 * outage's writes, never less than the fallback without L1), with the ops since laid over them in
 * id order (each op once), so cuts, clears and edits made meanwhile apply.
 */
export function staleHistory(
  known: { messages: Message[]; after: Op[] },
  held: readonly Message[],
  user: string,
  thread: string,
  pending: readonly Op[],
  limit: number,
): Message[] {
  const byId = new Map<string, Message>();
  for (const m of known.messages) byId.set(m.id, m);
  for (const m of held) byId.set(m.id, m);
  const base = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const ops = new Map<string, Op>();
  for (const op of [...known.after, ...pending]) ops.set(op.id, op);
  const sorted = [...ops.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return mergeHistory(base, { floor: '' }, user, thread, sorted, limit);
}

function keyOf(user: string, thread: string): string {
  return `${user}\u0000${thread}`;
}

/** A caller may change what it is given: each read gets its own message objects (meta is frozen and shared). */
/**
 * A fresh message, built field by field in one order: a spread's cost follows how many shapes
 * its site has seen, and messages reach L1 in several (Redis, PostgreSQL, this process's writes,
 * with and without their optional fields), which made a hot read of 50 messages about three times
 * slower in a process that had seen them all (the bench's full run).
 */
function copy(m: Message): Message {
  const out: Message = { id: m.id, role: m.role, content: m.content, createdAt: new Date(m.createdAt.getTime()), thread: m.thread, tokens: m.tokens };
  if (m.meta !== undefined) out.meta = m.meta;
  if (m.status !== undefined) out.status = m.status;
  if (m.updatedAt !== undefined) out.updatedAt = new Date(m.updatedAt.getTime());
  return out;
}

function copyRecord(r: UserRecord): UserRecord {
  return {
    phone: { ...r.phone },
    booking: { ...r.booking, value: r.booking.value === null ? null : structuredClone(r.booking.value) },
    subscribed: { ...r.subscribed },
  };
}

function deepFreeze(value: JsonValue): void {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const v of Object.values(value)) deepFreeze(v);
}
