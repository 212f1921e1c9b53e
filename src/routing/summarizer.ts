import { randomUUID } from 'node:crypto';
import { ErrorCode, StoreError } from '../errors.js';
import type { StoreLogger } from '../logger.js';
import { tokensOf } from '../model/context.js';
import { nextId } from '../model/ids.js';
import type { SummaryOp } from '../model/ops.js';
import { MAX_HISTORY_LIMIT, type SummarizeHook } from '../options.js';
import type { Message } from '../types.js';
import type { Reads } from './reads.js';
import type { Writes } from './writes.js';

/** Where the lease of a summary run is kept (Redis, else PostgreSQL); undefined: in this process only. */
export interface SummaryLeases {
  take(user: string, thread: string, token: string, ttlMs: number): Promise<boolean>;
  give(user: string, thread: string, token: string): Promise<void>;
}

export interface SummarizerDeps {
  hook: SummarizeHook;
  afterTokens: number;
  timeoutMs: number;
  reads: Reads;
  writes: Writes;
  /** How long one store call may take. */
  budgetMs: number;
  leases: SummaryLeases | undefined;
  logger: StoreLogger;
  /** Resolves once the tiers have started. */
  ready: Promise<unknown>;
  /** How often the threads this process wrote are checked against the durable tier. @default 10_000 */
  checkEveryMs?: number;
}

/** One thread this process wrote to. */
interface Tracked {
  user: string;
  thread: string;
  /** Estimated tokens not in the summary yet (exact after a durable check, then counted per write). */
  tokens: number;
  /** Checked against the durable tier since this process began tracking it. */
  checked: boolean;
  /** Failed runs in a row (0: none). */
  failures: number;
  /** A run scheduled (setImmediate) or waiting for its retry. */
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** Not before this time (ms): another process held the lease, or a retry waits. */
  notBefore: number;
}

const MAX_TRACKED = 10_000;
const CHECKS_PER_PASS = 100;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 5 * 60_000;
const LEASE_BUSY_MS = 5000;

/**
 * Rolling summaries, in the background: after a write to a thread, a cheap estimate in RAM says
 * whether its tokens not yet summarised reached `afterTokens`; a run is then scheduled (never on the
 * caller's path). A run takes the thread's lease, reads the summary and the messages after it,
 * calls the hook within `timeoutMs`, and writes a `summary` op through the normal write routing
 * (journaled through outages like any write). A failed run is retried with exponential backoff
 * (1 s to 5 min), logged once per failure streak. Every `checkEveryMs`, threads this process wrote
 * that were never checked against the durable tier are (the estimate starts at 0 in a new process).
 */
export class Summarizer {
  readonly #d: SummarizerDeps;
  readonly #tracked = new Map<string, Tracked>();
  /** Runs in flight in this process, by thread key. */
  readonly #running = new Map<string, Promise<string | null>>();
  readonly #aborts = new Set<AbortController>();
  readonly #pass: NodeJS.Timeout;
  #closed = false;

  constructor(deps: SummarizerDeps) {
    this.#d = deps;
    this.#pass = setInterval(() => this.check(), deps.checkEveryMs ?? 10_000);
    this.#pass.unref();
  }

  /** A message was appended (or a draft finished) in a thread: count it, and schedule a run past the threshold. */
  appended(user: string, thread: string, message: { content: string; status?: string | undefined; tokens?: number | undefined }): void {
    if (this.#closed || message.status === 'streaming') return;
    const t = this.#track(user, thread);
    t.tokens += tokensOf(message);
    if (t.tokens >= this.#d.afterTokens) this.#schedule(t, 0);
  }

  /** A message of the thread was edited or cut: the summary may be marked for a rerun. */
  changed(user: string, thread: string): void {
    if (this.#closed) return;
    this.#schedule(this.#track(user, thread), 0);
  }

  /** The thread was cleared or dropped, or the user erased (thread undefined): nothing is left to summarise. */
  erased(user: string, thread?: string): void {
    for (const t of this.#tracked.values()) {
      if (t.user !== user || (thread !== undefined && t.thread !== thread)) continue;
      t.tokens = 0;
      t.checked = true;
    }
  }

  /** Checks the threads this process wrote that were never checked against the durable tier (a pass). */
  check(): void {
    if (this.#closed) return;
    let budget = CHECKS_PER_PASS;
    for (const t of this.#tracked.values()) {
      if (budget === 0) break;
      if (t.checked || t.timer) continue;
      budget--;
      this.#schedule(t, 0);
    }
  }

  /** summarizeNow: a run now, whatever the estimate; resolves the new summary, or null when there is nothing to summarise. */
  async now(user: string, thread: string): Promise<string | null> {
    const key = keyOf(user, thread);
    const t = this.#track(user, thread);
    // After a run of this process already under way (it may be writing a summary this one would redo).
    for (let under = this.#running.get(key); under; under = this.#running.get(key)) await under.catch(() => undefined);
    const run = this.#run(t, true);
    this.#running.set(key, run);
    try {
      return await run;
    } finally {
      if (this.#running.get(key) === run) this.#running.delete(key);
      if (t.failures > 0) this.#schedule(t, 0);
    }
  }

  /** Stops scheduling, abandons hooks in flight and waits (at most `ms`) for runs to end. */
  async close(ms: number): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pass);
    for (const t of this.#tracked.values()) this.#clearTimer(t);
    for (const abort of this.#aborts) abort.abort(new StoreError(ErrorCode.STORE_CLOSED, 'the store is closing'));
    const runs = Promise.allSettled([...this.#running.values()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([runs, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
  }

  #track(user: string, thread: string): Tracked {
    const key = keyOf(user, thread);
    let t = this.#tracked.get(key);
    if (t) {
      // Most recently written last: the first entries are the ones to forget past the bound.
      this.#tracked.delete(key);
      this.#tracked.set(key, t);
      return t;
    }
    t = { user, thread, tokens: 0, checked: false, failures: 0, timer: undefined, notBefore: 0 };
    this.#tracked.set(key, t);
    for (const [oldKey, old] of this.#tracked) {
      if (this.#tracked.size <= MAX_TRACKED) break;
      if (old.timer || this.#running.has(oldKey)) continue;
      this.#tracked.delete(oldKey);
    }
    return t;
  }

  #schedule(t: Tracked, delayMs: number): void {
    if (this.#closed || t.timer || this.#running.has(keyOf(t.user, t.thread))) return;
    const wait = Math.max(delayMs, t.notBefore - Date.now());
    const go = () => {
      t.timer = undefined;
      this.#background(t);
    };
    if (wait <= 0) t.timer = setImmediate(go);
    else {
      t.timer = setTimeout(go, wait);
      t.timer.unref();
    }
  }

  #clearTimer(t: Tracked): void {
    if (!t.timer) return;
    if ('refresh' in t.timer) clearTimeout(t.timer);
    else clearImmediate(t.timer);
    t.timer = undefined;
  }

  /** A background run: never throws; a failure schedules a retry with backoff. */
  #background(t: Tracked): void {
    const key = keyOf(t.user, t.thread);
    if (this.#closed || this.#running.has(key)) return;
    const run = this.#run(t, false);
    this.#running.set(key, run);
    run
      .catch(() => undefined)
      .finally(() => {
        if (this.#running.get(key) === run) this.#running.delete(key);
        // A retry after the backoff (notBefore); or writes that arrived during the run crossed the threshold again.
        if (t.failures > 0 || t.tokens >= this.#d.afterTokens) this.#schedule(t, 0);
      });
  }

  async #run(t: Tracked, forced: boolean): Promise<string | null> {
    const { user, thread } = t;
    await this.#d.ready;
    const token = randomUUID();
    const leases = this.#d.leases;
    const ttl = this.#d.timeoutMs + 4 * this.#d.budgetMs + 5000;
    if (leases && !(await this.#lease(leases, t, token, ttl, forced))) {
      // Another process is summarising this thread: its summary will do.
      t.notBefore = Date.now() + LEASE_BUSY_MS;
      if (!forced) return null;
      return (await this.#d.reads.summary(user, thread, Date.now() + this.#d.budgetMs))?.text ?? null;
    }
    try {
      const text = await this.#summarise(t, forced);
      if (t.failures > 0) this.#d.logger.info(`summaries of thread ${thread} of user ${user} work again after ${t.failures} failed runs`);
      t.failures = 0;
      t.notBefore = 0;
      return text ?? null;
    } catch (error) {
      t.failures++;
      if (t.failures === 1) {
        this.#d.logger.warn(`summarize failed for thread ${thread} of user ${user} (${(error as Error).message}); retrying with backoff until it works`);
      }
      t.notBefore = Date.now() + Math.min(FIRST_RETRY_MS * 2 ** (t.failures - 1), MAX_RETRY_MS);
      throw error;
    } finally {
      if (leases) await leases.give(user, thread, token).catch(() => undefined);
    }
  }

  /** Takes the lease; summarizeNow waits for another process's run (up to its deadline) rather than give up. */
  async #lease(leases: SummaryLeases, t: Tracked, token: string, ttl: number, forced: boolean): Promise<boolean> {
    const until = Date.now() + this.#d.timeoutMs + 2 * this.#d.budgetMs;
    for (;;) {
      if (await leases.take(t.user, t.thread, token, ttl)) return true;
      if (!forced || this.#closed || Date.now() > until) return false;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /**
   * Reads, decides and summarises. Resolves the new summary's text, or undefined when no run was
   * due (a check below the threshold, or nothing to summarise: then the current text, for summarizeNow).
   */
  async #summarise(t: Tracked, forced: boolean): Promise<string | null | undefined> {
    const { user, thread } = t;
    const { reads, budgetMs } = this.#d;
    // The op's id is taken before the read: a change of a covered message after it marks the summary.
    const id = nextId();
    const deadline = Date.now() + budgetMs * 4;
    const [summary, history] = await Promise.all([reads.summary(user, thread, deadline), reads.history(user, thread, MAX_HISTORY_LIMIT, deadline)]);
    const stale = summary !== null && summary.dirty !== '';
    const from = summary && !stale ? summary.covers : '';
    const messages = history.filter((m) => m.id > from && m.id < id && m.status !== 'streaming');
    const tokens = messages.reduce((sum, m) => sum + tokensOf(m as Message & { tokens?: number }), 0);
    t.checked = true;
    t.tokens = tokens;
    if (messages.length === 0 || (!forced && !stale && tokens < this.#d.afterTokens)) {
      return forced ? (summary?.text ?? null) : undefined;
    }
    const text = await this.#call({ userId: user, thread, summary: stale ? null : (summary?.text ?? null), messages });
    const op: SummaryOp = { kind: 'summary', user, id, thread, text, covers: (messages[messages.length - 1] as Message).id };
    await this.#d.writes.route(op, Date.now() + budgetMs);
    // What was appended during the run is still to summarise.
    t.tokens = Math.max(0, t.tokens - tokens);
    return text;
  }

  /** The hook within its deadline; a hung call is abandoned (its signal aborted) and counts as failed. */
  async #call(input: { userId: string; thread: string; summary: string | null; messages: Message[] }): Promise<string> {
    const abort = new AbortController();
    this.#aborts.add(abort);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new StoreError(ErrorCode.TIER_TIMEOUT, `summarize took longer than ${this.#d.timeoutMs} ms`);
        abort.abort(error);
        reject(error);
      }, this.#d.timeoutMs);
    });
    const aborted = new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(abort.signal.reason as Error)));
    try {
      const text = await Promise.race([Promise.resolve().then(() => this.#d.hook({ ...input, signal: abort.signal })), timeout, aborted]);
      if (typeof text !== 'string') throw new StoreError(ErrorCode.INVALID_OPTION, `summarize must resolve a string, got ${typeof text}`);
      return text;
    } finally {
      clearTimeout(timer);
      this.#aborts.delete(abort);
    }
  }
}

function keyOf(user: string, thread: string): string {
  return `${user}\n${thread}`;
}
