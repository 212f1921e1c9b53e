import type { StorageAdapter, WriteOutcome } from '../adapters/contract.js';
import type { MemoryAdapter } from '../adapters/memory.js';
import { isTierUnavailable, type Breaker } from './breaker.js';
import type { HotCache } from '../cache/hot-cache.js';
import type { L1 } from '../cache/l1.js';
import type { Journal } from './journal.js';
import type { AppendOp, Op } from '../model/ops.js';
import type { WriteMode } from '../options.js';
import type { Stats } from '../stats.js';

export interface WritesDeps {
  /** The in-process tier, when on: told of every write this process makes, whatever its outcome. */
  l1: L1 | undefined;
  cache: HotCache | undefined;
  durable: Breaker<StorageAdapter> | undefined;
  memory: MemoryAdapter;
  journal: Journal;
  stats: Stats;
  writeMode: WriteMode;
  /** How long one store call may take (the slowest tier's deadline). */
  budgetMs: number;
}

/**
 * Where a write goes. Each resolves to the id of an earlier message when the op repeated its
 * idempotency key (nothing was written), else to undefined.
 */
export class Writes {
  constructor(private readonly d: WritesDeps) {}

  /**
   * One op, through whichever tiers can take it (see the README's failure table). `behindPending`:
   * the user has writes not yet durable that this op may depend on (an edit of a message still in
   * the journal), so it follows them through the journal rather than overtake them.
   */
  async route(op: Op, deadline: number, behindPending = false): Promise<string | undefined> {
    try {
      return await this.#route(op, deadline, behindPending);
    } finally {
      // Before the caller hears back: its next read cannot be served a copy from before this write.
      this.d.l1?.wrote([op]);
    }
  }

  async #route(op: Op, deadline: number, behindPending: boolean): Promise<string | undefined> {
    const { durable, cache, writeMode } = this.d;
    if (!durable) return repeatedIn(this.d.memory.writeSync([op]));
    if (op.kind === 'delete') this.#erasePending(op.user);
    // Behind writes only this process holds (every server was down): in its RAM journal, after them.
    if (behindPending && !cache?.up && this.d.journal.forUser(op.user).length > 0) return this.#hold(op);
    if (writeMode === 'write-behind' || (behindPending && durable.up)) {
      const journaled = await this.#journalInCache([op], deadline);
      if (journaled) return repeatedIn(journaled);
    }
    if (!durable.up) return this.#withoutDurable(op, deadline);
    const toCache = writeMode === 'write-through' ? cache?.writeThrough([op], deadline) : undefined;
    const [toDurable, cached] = await Promise.allSettled([durable.call((t) => t.write([op]), deadline), toCache]);
    if (toDurable.status === 'fulfilled') {
      const earlier = repeatedIn(toDurable.value);
      await cache?.committed([op], cached, [earlier !== undefined], deadline);
      return earlier ?? repeatedIn(cached.status === 'fulfilled' ? cached.value : undefined);
    }
    if (!isTierUnavailable(toDurable.reason)) {
      cache?.markStale(op);
      throw toDurable.reason;
    }
    return this.#withoutDurable(op, deadline);
  }

  /**
   * Appends that arrived together, routed as one batch where that is the whole story (write-behind
   * into the cache; write-through into both tiers). Anything else (a tier down, a refusal) goes op
   * by op through route(), which handles every case; ops are idempotent, so a partial batch is safe to redo.
   */
  async appends(ops: AppendOp[]): Promise<(string | undefined)[]> {
    try {
      return await this.#appends(ops);
    } finally {
      this.d.l1?.wrote(ops);
    }
  }

  async #appends(ops: AppendOp[]): Promise<(string | undefined)[]> {
    const { durable, cache, writeMode } = this.d;
    const deadline = Date.now() + this.d.budgetMs;
    const single = () => Promise.all(ops.map((op) => this.#route(op, deadline, false)));
    if (ops.length === 1 || !durable) return single();
    if (writeMode === 'write-behind' && cache?.up) {
      return (await this.#journalInCache(ops, deadline)) ? ops.map(() => undefined) : single();
    }
    if (!durable.up || writeMode !== 'write-through') return single();
    const toCache = cache?.writeThrough(ops, deadline);
    const [toDurable, cached] = await Promise.allSettled([durable.call((t) => t.write(ops), deadline), toCache]);
    if (toDurable.status === 'rejected') return single();
    await cache?.committed(ops, cached, [], deadline);
    return ops.map(() => undefined);
  }

  /** Write-behind: the cache journals the ops atomically with their write; undefined when it cannot (the durable tier takes them). */
  async #journalInCache(ops: readonly Op[], deadline: number): Promise<WriteOutcome[] | undefined> {
    if (!this.d.cache?.up) return undefined;
    return this.d.cache.journal(ops, deadline).catch(() => undefined);
  }

  /** The durable tier is unreachable: journal in the cache (atomically with the write), else hold in RAM. */
  async #withoutDurable(op: Op, deadline: number): Promise<string | undefined> {
    const { cache, journal } = this.d;
    this.d.stats.count(this.d.durable?.name ?? 'memory', 'fallbacks');
    if (cache?.up) {
      // A copy in RAM too, while there is room: a restart of the cache before the durable tier is back loses nothing.
      const outcome = await cache.journal([op], deadline, (held) => journal.tryPush(held)).catch(() => undefined);
      if (outcome) return repeatedIn(outcome);
    }
    const earlier = this.#hold(op);
    cache?.markStale(op);
    return earlier;
  }

  /** Every server is unreachable: RAM and the journal take the write, or both refuse it. */
  #hold(op: Op): string | undefined {
    this.d.journal.assertRoom(op);
    const earlier = repeatedIn(this.d.memory.writeSync([op]));
    if (earlier === undefined) this.d.journal.push(op);
    return earlier;
  }

  #erasePending(user: string): void {
    this.d.journal.dropUser(user);
    this.d.memory.forget(user);
  }
}

/** The earlier message's id when a single-op write repeated its idempotency key. */
function repeatedIn(outcome: void | readonly WriteOutcome[] | undefined): string | undefined {
  const first = outcome?.[0];
  return typeof first === 'string' ? first : undefined;
}
