import { randomUUID } from 'node:crypto';
import type { DeadLetterRecord, StorageAdapter } from '../adapters/contract.js';
import type { MemoryAdapter } from '../adapters/memory.js';
import { isTierUnavailable, type Breaker } from './breaker.js';
import type { HotCache } from '../cache/hot-cache.js';
import { idTime } from '../model/ids.js';
import type { Journal } from './journal.js';
import { isSealedOp } from '../crypto/sealed.js';
import type { Op } from '../model/ops.js';
import type { Retention } from '../options.js';
import type { Logger, SyncResult } from '../types.js';

export interface SyncerDeps {
  /** Resolves once the store's tiers have started: no pass runs before (a client still connecting fails fast). */
  ready: Promise<void>;
  /** The cache whose journal the syncer drains; undefined in other layouts. */
  cache: HotCache | undefined;
  durable: Breaker<StorageAdapter>;
  journal: Journal;
  memory: MemoryAdapter;
  batchSize: number;
  logger: Logger;
  /** Users whose ops just reached the durable tier from this process's journal. */
  flushed(users: Set<string>): Promise<void>;
  deadLetter(letter: DeadLetterRecord, error: Error): void;
  /** Retention rules, and the users this process wrote messages for since the last pass (taken by the call). */
  retention: Retention;
  takeWrittenUsers(): string[];
  /** Finishes drafts abandoned by dead processes; resolves how many. */
  sweepDrafts(): Promise<number>;
  /** Whether the store has encryption keys: without them a journal entry holding sealed values is left for a process that has them. */
  encrypted: boolean;
}

/** The sync lease: short, and renewed each round, so a process that dies holding it blocks others for seconds only. */
const LEASE_MS = 5_000;
const MAX_PASS_MS = 60_000;
const DRAIN_BACKOFF_MS = { first: 100, max: 2_000 };
/** Chunks written to PostgreSQL at once (each on its own connection). */
const MOVING = 2;

/**
 * Moves pending writes to the durable tier: this process's journal first, then Redis's journal
 * (users picked from its dirty set, so only what changed moves). Ops are idempotent, so passes of
 * several processes may overlap; background passes take a lease so they do not repeat each other.
 */
export class Syncer {
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** This process's lease token: a pass that failed before releasing the lease can take it again. */
  readonly #token = randomUUID();
  #draining = false;
  #halted = false;
  #indexed = false;
  lastSyncAt: Date | null = null;
  /** Passes started so far. */
  passes = 0;
  /** When the oldest entry the last pass saw in Redis's journal was written (undefined: none). */
  oldestPendingAt: number | undefined;

  constructor(private readonly deps: SyncerDeps) {}

  get running(): boolean {
    return this.#timer !== undefined;
  }

  start(intervalMs: number, onResult: (result: SyncResult) => void, onError: (error: Error) => void): void {
    this.stop();
    this.#timer = setInterval(() => {
      this.run(true).then(
        (result) => result && onResult(result),
        (error: unknown) => onError(error as Error),
      );
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Stops everything for good (the store is closing): the timer and any drain. */
  halt(): void {
    this.#halted = true;
    this.stop();
  }

  /**
   * After an outage (or at start, with writes left pending): passes until what was pending is
   * moved, retrying with backoff through failures of either tier (a Redis client being replaced,
   * a lease held by a process that died) and logging once per streak of failures. Ends when
   * nothing is pending, when a pass moves nothing (a tier is down again: its recovery drains
   * anew), or once it has moved the backlog it started with (later writes are the syncer's).
   */
  drain(onError: (error: Error) => void): void {
    if (this.#draining || this.#halted) return;
    this.#draining = true;
    void this.#drainLoop(onError).finally(() => (this.#draining = false));
  }

  async #drainLoop(onError: (error: Error) => void): Promise<void> {
    let wait = DRAIN_BACKOFF_MS.first;
    let failing = false;
    let backlog: number | undefined;
    let total = 0;
    while (!this.#halted) {
      try {
        const result = await this.run(true);
        failing = false;
        if (result) {
          const moved = result.messages + result.userData + result.subscribers;
          total += moved;
          backlog ??= moved + result.pending;
          if (result.pending === 0 || moved === 0 || total >= backlog) return;
          wait = DRAIN_BACKOFF_MS.first;
          continue;
        }
      } catch (error) {
        if (!failing) onError(error as Error);
        else this.deps.logger.debug(`sync retry failed: ${(error as Error).message}`);
        failing = true;
      }
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      wait = Math.min(wait * 2, DRAIN_BACKOFF_MS.max);
    }
  }

  /** One pass, after any pass already running; `background` passes yield to another process's. */
  run(background = false): Promise<SyncResult | undefined> {
    const next = this.#chain.then(() => this.#pass(background));
    this.#chain = next.catch(() => {});
    return next;
  }

  async #pass(background: boolean): Promise<SyncResult | undefined> {
    this.passes++;
    await this.deps.ready;
    const started = Date.now();
    this.oldestPendingAt = undefined;
    const moved = { messages: 0, userData: 0, subscribers: 0 };
    await this.#flushJournal(moved);
    const { cache, durable } = this.deps;
    let pending = this.deps.journal.size;
    if (cache?.up && durable.up) {
      const token = this.#token;
      const renew = background ? () => cache.acquireLease(token, LEASE_MS) : undefined;
      if (renew && !(await renew())) return undefined;
      try {
        await this.#indexJournals(cache);
        await this.#drainCache(cache, moved, started, renew);
      } finally {
        if (background) await cache.releaseLease(token);
      }
      const inCache = await cache.pendingCount();
      cache.pending = inCache;
      if (inCache === 0) this.oldestPendingAt = undefined;
      pending += inCache;
    }
    await this.#retain();
    await this.#sweepDrafts();
    this.lastSyncAt = new Date();
    return { ...moved, pending, durationMs: Date.now() - started };
  }

  /** Once per process: the backstop that finds journals the pending index does not point to. */
  async #indexJournals(cache: HotCache): Promise<void> {
    if (this.#indexed) return;
    const found = await cache.indexJournals();
    this.#indexed = true;
    if (found > 0) this.deps.logger.warn(`found ${found} pending journals missing from the index (written by 0.1, or left by a crash); they sync now`);
  }

  /** A failed sweep is tried again next pass; it never fails the pass that moved writes. */
  async #sweepDrafts(): Promise<void> {
    try {
      const finished = await this.deps.sweepDrafts();
      if (finished > 0) this.deps.logger.info(`finished ${finished} abandoned drafts as 'aborted'`);
    } catch (error) {
      this.deps.logger.debug(`draft sweep failed: ${(error as Error).message}`);
    }
  }

  async #retain(): Promise<void> {
    const { durable, retention, batchSize, logger } = this.deps;
    if (retention.keepLast === undefined && retention.maxAgeDays === undefined) return;
    if (!durable.adapter.enforceRetention || !durable.up) return;
    const users = this.deps.takeWrittenUsers();
    const rule = {
      users,
      batch: batchSize,
      ...(retention.keepLast === undefined ? {} : { keepLast: retention.keepLast }),
      ...(retention.maxAgeDays === undefined ? {} : { before: new Date(Date.now() - retention.maxAgeDays * 86_400_000) }),
    };
    const deleted = await durable.call((d) => d.enforceRetention?.(rule) ?? Promise.resolve(0));
    if (deleted > 0) logger.debug(`retention removed ${deleted} messages`);
  }

  /** Writes held in this process (a PostgreSQL outage) go to the durable tier in batches. */
  async #flushJournal(moved: Counts): Promise<void> {
    const { journal, durable, memory } = this.deps;
    while (journal.size > 0 && durable.up) {
      const ops = journal.peek(this.deps.batchSize);
      const done = await this.#write(ops);
      journal.remove(done);
      count(done, moved);
      await this.deps.flushed(new Set(done.map((op) => op.user)));
    }
    if (journal.size === 0) memory.clear();
  }

  /**
   * Chunks of different dirty users flow through the stages without a pause: the next chunk's
   * journals are read while up to MOVING chunks are written to PostgreSQL (each on its own
   * connection) and acknowledged. A user read stays `busy` until its chunk is acknowledged and is
   * not picked again before, so no two chunks in flight share a user: their batches never contend
   * for rows, and each user's entries are written and acknowledged in journal order. A crash at any
   * point leaves every entry in its journal until after its batch committed (the ack follows the
   * commit of its own chunk only), so a replay rewrites at most what committed, idempotently.
   */
  async #drainCache(cache: HotCache, moved: Counts, started: number, renew: (() => Promise<boolean>) | undefined): Promise<void> {
    const perChunk = Math.max(1, Math.floor(this.deps.batchSize / 10));
    // Users counted in the index with nothing journaled (a Cluster write between its two steps, or
    // one that died there): looked at once per pass, which also lets the index heal them.
    const idle = new Set<string>();
    const busy = new Set<string>();
    const moving: Promise<void>[] = [];
    let queue: string[] = [];
    /** The next chunk's users (none: the pass is over), taking more from the index as needed. */
    const next = async (): Promise<string[]> => {
      while (queue.length === 0) {
        if (Date.now() - started >= MAX_PASS_MS || (renew && !(await renew()))) return [];
        queue = (await cache.pendingUsers(perChunk * 4)).filter((user) => !idle.has(user) && !busy.has(user));
        if (queue.length > 0) break;
        // Every user left is in flight (or idle): what their acks leave is picked up after them.
        if (moving.length === 0) return [];
        await moving.shift();
      }
      const users = queue.splice(0, perChunk);
      for (const user of users) busy.add(user);
      return users;
    };
    const read = async (): Promise<Chunk | undefined> => {
      const users = await next();
      return users.length === 0 ? undefined : this.#readChunk(cache, users);
    };
    const move = async (chunk: Chunk): Promise<void> => {
      await this.#move(cache, chunk, moved);
      for (const user of chunk.entries.keys()) busy.delete(user);
    };
    try {
      let reading = quiet(read());
      for (let chunk = await reading; chunk; chunk = await reading) {
        for (const [user, entries] of chunk.entries) if (entries.length === 0) idle.add(user);
        reading = quiet(read());
        while (moving.length >= MOVING) await moving.shift();
        moving.push(quiet(move(chunk)));
      }
    } finally {
      // A failed pass ends once the writes it has in flight ended (it releases the lease after).
      await Promise.allSettled(moving);
    }
    await Promise.all(moving);
  }

  /** Writes a chunk to the durable tier in batches, then removes it from the journals. */
  async #move(cache: HotCache, chunk: Chunk, moved: Counts): Promise<void> {
    for (let j = 0; j < chunk.ops.length; j += this.deps.batchSize) {
      count(await this.#write(chunk.ops.slice(j, j + this.deps.batchSize)), moved);
    }
    await this.#ack(cache, chunk);
  }

  async #readChunk(cache: HotCache, users: string[]): Promise<Chunk> {
    const journals = await cache.readJournals(users, this.deps.batchSize);
    const chunk: Chunk = { ops: [], entries: new Map() };
    for (const [user, entries] of journals) {
      if (!this.deps.encrypted && entries.some((entry) => entry.op && isSealedOp(entry.op))) {
        // Moved as it is, it would land sealed with a key PostgreSQL does not have.
        this.deps.logger.warn(`the journal of user ${user} holds encrypted writes and this process has no encryption keys: left for a process that has them`);
        chunk.entries.set(user, []); // nothing to acknowledge: idle for the rest of the pass
        continue;
      }
      chunk.entries.set(
        user,
        entries.map((entry) => entry.raw),
      );
      for (const { op, error, raw } of entries) {
        if (op) chunk.ops.push(op);
        // Acknowledged with the rest: an entry nobody can read would block the journal forever.
        else
          this.deps.deadLetter(
            { user, kind: 'unreadable', id: '', entry: raw, error: `unreadable journal entry: ${error?.message}` },
            error ?? new Error('unreadable'),
          );
      }
      this.#noteOldest(entries[0]?.op?.id);
    }
    return chunk;
  }

  /** Removes what was written (or set aside) from each user's journal; an empty one leaves the dirty set. */
  async #ack(cache: HotCache, chunk: Chunk): Promise<void> {
    await cache.ack(chunk.entries);
  }

  #noteOldest(id: string | undefined): void {
    if (id !== undefined) this.oldestPendingAt = Math.min(this.oldestPendingAt ?? Infinity, idTime(id));
  }

  /**
   * Writes ops; when the durable tier rejects a batch (not an outage), halves it until the ops it
   * refuses for good are found, and sets those aside as dead letters. Returns the ops handled.
   */
  async #write(ops: Op[]): Promise<Op[]> {
    try {
      await this.deps.durable.call((d) => d.write(ops));
      return ops;
    } catch (error) {
      if (isTierUnavailable(error)) throw error;
      if (ops.length === 1) {
        const op = ops[0] as Op;
        this.deps.deadLetter({ user: op.user, kind: op.kind, id: op.id, entry: JSON.stringify(op), error: (error as Error).message }, error as Error);
        return ops;
      }
      const middle = ops.length >> 1;
      return [...(await this.#write(ops.slice(0, middle))), ...(await this.#write(ops.slice(middle)))];
    }
  }
}

type Counts = { messages: number; userData: number; subscribers: number };

/** One chunk of users: the ops their journal entries decode to, and the raw entries to acknowledge. */
interface Chunk {
  ops: Op[];
  entries: Map<string, string[]>;
}

/** The same promise, marked handled: a stage whose failure is awaited later must not warn meanwhile. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

function count(ops: readonly Op[], moved: Counts): void {
  for (const op of ops) {
    if (op.kind === 'append') moved.messages++;
    else if (op.kind === 'subscribe') moved.subscribers++;
    else moved.userData++;
  }
}
