import type { CacheMiss, UserRecord } from './adapter.js';
import { isMiss } from './adapter.js';
import type { RedisAdapter } from './adapters/redis.js';
import { applyOp, emptyUserState, mergeHistory, type Op } from './ops.js';
import type { Tier } from './tier.js';
import type { Tiers } from './tiers.js';
import type { Message } from './types.js';

/**
 * Where a read is served from: Redis's copy when it holds one, else the durable tier with the
 * writes still pending laid over it (then Redis is refilled), else, with no durable tier up,
 * the best this process has: Redis's journal and RAM.
 */
export class Reads {
  constructor(private readonly t: Tiers) {}

  async history(user: string, limit: number, deadline: number): Promise<Message[]> {
    const { durable, memory, opts } = this.t;
    if (limit === 0) return [];
    if (!durable) return (await memory.readHistory(user, limit)).messages;
    const cache = this.t.usableCache(user);
    let miss: CacheMiss | undefined;
    if (cache && limit <= opts.historyLimit) {
      const read = this.t.counted(await this.t.try(cache.call((c) => c.readHistory(user, limit), deadline)));
      if (read && !isMiss(read)) return read.messages;
      miss = read;
    }
    const want = Math.max(limit, opts.historyLimit);
    if (durable.up) {
      const [read, pending] = await Promise.all([
        durable.call((d) => d.readHistory(user, want, { fresh: miss !== undefined }), deadline).catch(this.t.unlessDown),
        this.#pending(user, miss, cache, deadline),
      ]);
      if (read && !isMiss(read)) {
        const merged = mergeHistory(read.messages, read.floor, user, pending, want);
        if (miss && cache) this.t.fill(cache.call((c) => c.fillHistory(user, miss.version, merged.slice(-opts.historyLimit))));
        return merged.length > limit ? merged.slice(-limit) : merged;
      }
    }
    this.t.stats.count(durable.name, 'fallbacks');
    const pending = await this.#pending(user, miss, cache, deadline);
    const hot = !miss && cache ? await this.t.try(cache.call((c) => c.readHistory(user, Math.min(limit, opts.historyLimit)), deadline)) : undefined;
    const base = hot && !isMiss(hot) ? hot.messages : (await memory.readHistory(user, limit)).messages;
    return mergeHistory(base, '', user, [...(isMiss(hot) ? hot.pending : []), ...pending], limit);
  }

  async user(user: string, deadline: number): Promise<UserRecord> {
    const { durable, memory } = this.t;
    if (!durable) return memory.readUser(user);
    const cache = this.t.usableCache(user);
    let miss: CacheMiss | undefined;
    if (cache) {
      const read = this.t.counted(await this.t.try(cache.call((c) => c.readUser(user), deadline)));
      if (read && !isMiss(read)) return read;
      miss = read;
    }
    const [read, pending] = await Promise.all([
      durable.up ? durable.call((d) => d.readUser(user, { fresh: miss !== undefined }), deadline).catch(this.t.unlessDown) : undefined,
      this.#pending(user, miss, cache, deadline),
    ]);
    const base = read && !isMiss(read) ? read : await memory.readUser(user);
    const merged = overlay(base, pending);
    if (miss && cache && read) this.t.fill(cache.call((c) => c.fillUser(user, miss.version, merged)));
    return merged;
  }

  async subscribers(deadline: number): Promise<string[]> {
    const { durable, memory, journal } = this.t;
    if (!durable) return memory.readSubscribers();
    const cache = this.t.usableCache(undefined);
    let miss: CacheMiss | undefined;
    if (cache) {
      const read = this.t.counted(await this.t.try(cache.call((c) => c.readSubscribers(), deadline)));
      if (read && !isMiss(read)) return read;
      miss = read;
    }
    const fresh = { fresh: miss !== undefined };
    const list = durable.up ? await durable.call((d) => d.readSubscribers(fresh), deadline).catch(this.t.unlessDown) : undefined;
    const base = new Set(list && !isMiss(list) ? list : await memory.readSubscribers());
    const pending = [...(miss?.pending ?? []), ...journal.users().flatMap((u) => journal.forUser(u))];
    // A pending (un)subscription wins only over what PostgreSQL has with an older op id.
    for (const user of new Set(pending.map((op) => op.user))) {
      const record = list && durable.up ? await durable.call((d) => d.readUser(user, fresh), deadline).catch(this.t.unlessDown) : undefined;
      const start = record && !isMiss(record) ? record.subscribed : { value: base.has(user), id: '' };
      const state = { ...emptyUserState(), subscribed: { ...start } };
      for (const op of pending) if (op.user === user) applyOp(state, op);
      if (state.subscribed.value) base.add(user);
      else base.delete(user);
    }
    const subscribers = [...base];
    if (miss && cache && list) this.t.fill(cache.call((c) => c.fillSubscribers(miss.version, subscribers)));
    return subscribers;
  }

  async isSubscriber(user: string, deadline: number): Promise<boolean> {
    const cache = this.t.usableCache(undefined) && this.t.usableCache(user);
    if (cache) {
      const read = this.t.counted(await this.t.try(cache.call((c) => c.isSubscriber(user), deadline)));
      if (typeof read === 'boolean') return read;
      if (read) return (await this.subscribers(deadline)).includes(user);
    }
    return (await this.user(user, deadline)).subscribed.value;
  }

  /** Ops for `user` that the durable tier may not have: Redis's journal and this process's. */
  async #pending(user: string, miss: CacheMiss | undefined, cache: Tier<RedisAdapter> | undefined, deadline: number): Promise<Op[]> {
    const own = this.t.journal.forUser(user);
    if (miss) return [...miss.pending, ...own];
    const cached = cache ? await this.t.try(cache.call((c) => c.readPending(user), deadline)) : undefined;
    return cached ? [...cached, ...own] : own;
  }
}

/** A user record with pending ops laid over it (last writer wins by op id). */
function overlay(record: UserRecord, ops: readonly Op[]): UserRecord {
  if (ops.length === 0) return record;
  const state = { ...emptyUserState(), phone: { ...record.phone }, booking: { ...record.booking }, subscribed: { ...record.subscribed } };
  for (const op of ops) applyOp(state, op);
  return { phone: state.phone, booking: state.booking, subscribed: state.subscribed };
}
