import type { CacheMiss, StorageAdapter, UserRecord } from '../adapters/contract.js';
import { isMiss } from '../adapters/contract.js';
import type { MemoryAdapter } from '../adapters/memory.js';
import { isTierUnavailable, type Breaker } from './breaker.js';
import { ErrorCode, UnavailableError } from '../errors.js';
import type { HotCache } from '../cache/hot-cache.js';
import { staleHistory, type L1, type L1Ticket } from '../cache/l1.js';
import type { Journal } from './journal.js';
import { applyOp, emptyUserState, findMessage, fromMessage, mergeHistory, threadState, toMessage, type Op, type SummaryRecord } from '../model/ops.js';
import { overlayThreads } from '../model/threads.js';
import type { WriteMode } from '../options.js';
import type { Stats } from '../stats.js';
import type { Message, ThreadPage } from '../types.js';

export interface ReadsDeps {
  /** The in-process tier, when on. */
  l1: L1 | undefined;
  /** Redis in front of PostgreSQL; undefined in other layouts. */
  cache: HotCache | undefined;
  /** PostgreSQL, else Redis alone; undefined when memory is the whole store. */
  durable: Breaker<StorageAdapter> | undefined;
  memory: MemoryAdapter;
  /** This process's pending writes. */
  journal: Journal;
  stats: Stats;
  historyLimit: number;
  writeMode: WriteMode;
}

/**
 * Where a read is served from: the cache's copy when it holds one, else the durable tier with the
 * writes still pending laid over it (then the cache is refilled), else, with no durable tier up,
 * the best this process has: the cache's journal and RAM.
 */
export class Reads {
  constructor(private readonly d: ReadsDeps) {}

  /**
   * `strict` (exports): every configured server tier must answer; where a read would fall back to
   * what this process holds, it throws STORE_UNAVAILABLE instead.
   */
  async history(user: string, thread: string, limit: number, deadline: number, strict = false): Promise<Message[]> {
    const { cache, durable, memory, historyLimit, l1 } = this.d;
    if (limit === 0) return [];
    if (!durable) return (await memory.readHistory(user, limit, { thread })).messages;
    let ticket: L1Ticket | undefined;
    if (l1 && limit <= historyLimit && !strict) {
      // Invalidations that reached the socket with the I/O that started this call land first.
      await yieldToIo();
      const held = l1.history(user, thread, limit);
      if (held) return held;
      ticket = l1.ticket();
    }
    let miss: CacheMiss | undefined;
    if (cache && limit <= historyLimit && !strict) {
      // With a ticket the whole window is read, so L1 can keep it for any limit up to historyLimit.
      const read = await cache.readHistory(user, thread, ticket ? historyLimit : limit, deadline, ticket !== undefined);
      if (read && !isMiss(read)) {
        l1?.fill(ticket, user, thread, read.messages);
        return read.messages.length > limit ? read.messages.slice(-limit) : read.messages;
      }
      miss = read;
    } else if (cache && !cache.usable(user)) {
      this.d.stats.count('redis', 'fallbacks');
    }
    const want = Math.max(limit, historyLimit);
    if (durable.up) {
      const [read, pending] = await Promise.all([
        durable
          .call((t) => t.readHistory(user, want, { fresh: strict || miss !== undefined, thread, track: !cache && ticket !== undefined }), deadline)
          .catch(unlessDown),
        this.#pending(user, miss, deadline, strict),
      ]);
      if (read && !isMiss(read)) {
        const merged = mergeHistory(read.messages, read, user, thread, pending, want);
        if (miss) cache?.fillHistory(user, thread, miss, merged.slice(-historyLimit));
        // It serves only when every journal was laid over it (after a cache miss, or with no cache
        // at all); any other read, a longer one too, is still the last history this process knew (stale-if-error).
        l1?.fill(miss || !cache ? ticket : undefined, user, thread, merged);
        return merged.length > limit ? merged.slice(-limit) : merged;
      }
    }
    if (strict) throw unreachable(durable.name);
    this.d.stats.count(durable.name, 'fallbacks');
    const pending = await this.#pending(user, miss, deadline);
    const hot = !miss && cache?.usable(user) ? await cache.readHistory(user, thread, Math.min(limit, historyLimit), deadline) : undefined;
    const ops = [...(isMiss(hot) ? hot.pending : []), ...pending];
    if (hot && !isMiss(hot)) return mergeHistory(hot.messages, { floor: '' }, user, thread, ops, limit);
    const held = (await memory.readHistory(user, limit, { thread })).messages;
    // Stale-if-error: the last copy this process knew, with every write made since laid over it.
    const known = l1?.lastKnown(user, thread);
    if (!known) return mergeHistory(held, { floor: '' }, user, thread, ops, limit);
    l1?.servedStale();
    return staleHistory(known, held, user, thread, ops, limit);
  }

  /**
   * A message by id, with the writes still pending laid over it; `pending` says whether the user
   * has writes not yet durable (a change to the message must then follow them through the journal).
   */
  async message(user: string, id: string, deadline: number): Promise<{ message: Message | null; pending: boolean }> {
    const { cache, durable, memory } = this.d;
    if (!durable) return { message: await memory.readMessage(user, id), pending: false };
    const [hot, pending] = await Promise.all([cache ? cache.readMessage(user, id, deadline) : undefined, this.#pending(user, undefined, deadline)]);
    // A held copy has every write that reached the cache; the durable tier is asked only when no copy holds it.
    let base: Message | null | undefined = hot ?? undefined;
    if (!base && durable.up) base = await durable.call((t) => t.readMessage(user, id), deadline).catch(unlessDown);
    // Without an answer from a tier that keeps everything, "not found" would be a guess; so it is
    // in write-behind while the cache (which holds the writes not yet synced) is unreachable.
    const known = base !== undefined && (!cache || cache.up || this.d.writeMode !== 'write-behind');
    if (base === undefined) base = await memory.readMessage(user, id);
    const state = emptyUserState();
    if (base) state.messages.push(fromMessage(user, base));
    for (const op of pending) applyOp(state, op);
    const found = findMessage(state, id);
    if (!found && !known) {
      throw new UnavailableError(
        ErrorCode.STORE_UNAVAILABLE,
        `cannot tell whether message ${id} exists: ${durable.name} is unreachable and no copy at hand holds it`,
      );
    }
    return { message: found ? toMessage(found) : null, pending: pending.length > 0 };
  }

  /**
   * A thread's summary from the durable tier (RAM when it is down), with the pending ops laid
   * over it (a summary, clear, drop, erasure, edit or cut not yet durable).
   */
  async summary(user: string, thread: string, deadline: number): Promise<SummaryRecord | null> {
    const { durable, memory } = this.d;
    if (!durable) return memory.readSummary(user, thread);
    const [read, pending] = await Promise.all([
      durable.up ? durable.call((t) => t.readSummary(user, thread), deadline).catch(unlessDown) : undefined,
      this.#pending(user, undefined, deadline),
    ]);
    if (read === undefined) this.d.stats.count(durable.name, 'fallbacks');
    const base = read === undefined ? await memory.readSummary(user, thread) : read;
    if (pending.length === 0) return base;
    const state = emptyUserState();
    const t = threadState(state, thread);
    t.summary = base ? { ...base } : undefined;
    for (const op of pending) if (op.user === user && op.kind !== 'append') applyOp(state, op);
    return t.summary ? { ...t.summary } : null;
  }

  /** Whether the user has writes not yet durable (here or in the cache's journal). */
  async hasPending(user: string, deadline: number): Promise<boolean> {
    return (await this.#pending(user, undefined, deadline)).length > 0;
  }

  /** A page of threads from the durable tier, with this user's pending writes laid over it. */
  async threads(user: string, limit: number, cursor: string | null, deadline: number, strict = false): Promise<ThreadPage> {
    const { durable, memory } = this.d;
    if (!durable) return overlayThreads(await memory.listThreads(user, limit, cursor), [], false);
    const page = durable.up ? await durable.call((t) => t.listThreads(user, limit, cursor), deadline).catch(unlessDown) : undefined;
    if (!page && strict) throw unreachable(durable.name);
    if (!page) this.d.stats.count(durable.name, 'fallbacks');
    const pending = await this.#pending(user, undefined, deadline, strict);
    return overlayThreads(page ?? (await memory.listThreads(user, limit, cursor)), pending, cursor === null);
  }

  /**
   * The user's record. `fields`: only phone and booking will be used (a cache's copy does not
   * carry the subscription), so L1 may serve and keep them, and stale-if-error applies.
   */
  async user(user: string, deadline: number, strict = false, fields = false): Promise<UserRecord> {
    const { cache, durable, memory } = this.d;
    if (!durable) return memory.readUser(user);
    const l1 = fields && !strict ? this.d.l1 : undefined;
    let ticket: L1Ticket | undefined;
    if (l1) {
      await yieldToIo();
      const held = l1.user(user);
      if (held) return held;
      ticket = l1.ticket();
    }
    let miss: CacheMiss | undefined;
    if (cache && !strict) {
      const read = await cache.readUser(user, deadline, ticket !== undefined);
      if (read && !isMiss(read)) {
        l1?.fillUser(ticket, user, read);
        return read;
      }
      miss = read;
    }
    const [read, pending] = await Promise.all([
      durable.up
        ? durable.call((t) => t.readUser(user, { fresh: strict || miss !== undefined, track: !cache && ticket !== undefined }), deadline).catch(unlessDown)
        : undefined,
      this.#pending(user, miss, deadline, strict),
    ]);
    if (strict && (!read || isMiss(read))) throw unreachable(durable.name);
    if (!read || isMiss(read)) {
      // Stale-if-error: the last record this process knew, with its writes since and the outage's.
      const held = await memory.readUser(user);
      const known = l1?.lastKnownUser(user);
      if (!known) return overlay(held, pending);
      l1?.servedStale();
      return overlay(newest(known.record, held), [...known.after, ...pending]);
    }
    const merged = overlay(read, pending);
    if (miss) cache?.fillUser(user, miss, merged);
    l1?.fillUser(miss || !cache ? ticket : undefined, user, merged);
    return merged;
  }

  async subscribers(deadline: number): Promise<string[]> {
    const { cache, durable, memory, journal } = this.d;
    if (!durable) return memory.readSubscribers();
    let miss: CacheMiss | undefined;
    if (cache) {
      const read = await cache.readSubscribers(deadline);
      if (read && !isMiss(read)) return read;
      miss = read;
    }
    const fresh = { fresh: miss !== undefined };
    const list = durable.up ? await durable.call((t) => t.readSubscribers(fresh), deadline).catch(unlessDown) : undefined;
    const base = new Set(list && !isMiss(list) ? list : await memory.readSubscribers());
    const pending = [...(miss?.pending ?? []), ...journal.users().flatMap((u) => journal.forUser(u))];
    // A pending (un)subscription wins only over what PostgreSQL has with an older op id.
    for (const user of new Set(pending.map((op) => op.user))) {
      const record = list && durable.up ? await durable.call((t) => t.readUser(user, fresh), deadline).catch(unlessDown) : undefined;
      const start = record && !isMiss(record) ? record.subscribed : { value: base.has(user), id: '' };
      const state = { ...emptyUserState(), subscribed: { ...start } };
      for (const op of pending) if (op.user === user) applyOp(state, op);
      if (state.subscribed.value) base.add(user);
      else base.delete(user);
    }
    const subscribers = [...base];
    if (miss && list) cache?.fillSubscribers(miss, subscribers);
    return subscribers;
  }

  async isSubscriber(user: string, deadline: number): Promise<boolean> {
    const { cache } = this.d;
    if (cache) {
      const read = await cache.isSubscriber(user, deadline);
      if (typeof read === 'boolean') return read;
      if (read) return (await this.subscribers(deadline)).includes(user);
    }
    return (await this.user(user, deadline)).subscribed.value;
  }

  /**
   * Ops for `user` that the durable tier may not have: the cache's journal and this process's.
   * `strict`: the cache's journal is read even when its copies are stale, and a cache that cannot
   * be read is an error rather than an empty journal.
   */
  async #pending(user: string, miss: CacheMiss | undefined, deadline: number, strict = false): Promise<Op[]> {
    const own = this.d.journal.forUser(user);
    const { cache } = this.d;
    if (strict && cache && !miss) {
      if (!cache.up) throw unreachable('redis');
      const cached = await cache.breaker
        .call((c) => c.readPending(user), deadline)
        .catch(() => {
          throw unreachable('redis');
        });
      return cached.length > 0 ? [...cached, ...own] : own;
    }
    if (!miss && !cache?.usable(user)) return own;
    const cached = await cache!.pendingOps(user, miss, deadline);
    return cached.length > 0 ? [...cached, ...own] : own;
  }
}

/**
 * Two turns of the event loop, each past a poll for I/O: Redis sends another process's
 * invalidation before the writer's acknowledgement, but the kernel may make the two sockets
 * readable a few microseconds apart (the other way round, under load); one turn catches what came
 * with the I/O that started this call, the second what followed it closely.
 */
async function yieldToIo(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
}

/** For a durable read: an outage is `undefined` (the caller falls back), anything else is thrown. */
function unlessDown(error: unknown): undefined {
  if (isTierUnavailable(error)) return undefined;
  throw error;
}

function unreachable(tier: string): UnavailableError {
  return new UnavailableError(
    ErrorCode.STORE_UNAVAILABLE,
    `${tier} is unreachable: what it holds cannot be read, so a complete answer cannot be given (try again once it is back)`,
  );
}

/** Field by field, the value written last (by op id) of two records. */
function newest(a: UserRecord, b: UserRecord): UserRecord {
  const pick = <T extends { id: string }>(x: T, y: T): T => (y.id > x.id ? y : x);
  return { phone: pick(a.phone, b.phone), booking: pick(a.booking, b.booking), subscribed: pick(a.subscribed, b.subscribed) };
}

/** A user record with pending ops laid over it (last writer wins by op id). */
function overlay(record: UserRecord, ops: readonly Op[]): UserRecord {
  if (ops.length === 0) return record;
  const state = { ...emptyUserState(), phone: { ...record.phone }, booking: { ...record.booking }, subscribed: { ...record.subscribed } };
  for (const op of ops) applyOp(state, op);
  return { phone: state.phone, booking: state.booking, subscribed: state.subscribed };
}
