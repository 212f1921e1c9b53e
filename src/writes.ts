import type { WriteOutcome } from './adapter.js';
import type { AppendOp, Op } from './ops.js';
import { isTierUnavailable } from './tier.js';
import type { Tiers } from './tiers.js';

/**
 * Where a write goes. Each resolves to the id of an earlier message when the op repeated its
 * idempotency key (nothing was written), else to undefined.
 */
export class Writes {
  constructor(private readonly t: Tiers) {}

  /** One op, through whichever tiers can take it (see the README's failure table). */
  async route(op: Op, deadline: number): Promise<string | undefined> {
    const { durable, cache, opts } = this.t;
    if (!durable) return repeated(this.t.memory.writeSync([op]));
    if (op.kind === 'delete') this.#erasePending(op.user);
    if (cache?.up && opts.writeMode === 'write-behind') {
      try {
        const outcome = await cache.call((c) => c.write([op], { pending: true }), deadline);
        this.t.pendingInCache++;
        return repeated(outcome);
      } catch (error) {
        this.t.cacheFailed(error); // PostgreSQL takes the write directly below
      }
    }
    if (!durable.up) return this.#withoutDurable(op, deadline);
    const toCache = cache?.up && opts.writeMode === 'write-through' ? cache.call((c) => c.write([op]), deadline) : undefined;
    const [toDurable, cached] = await Promise.allSettled([durable.call((d) => d.write([op]), deadline), toCache]);
    const cacheMissed = cache !== undefined && (toCache === undefined || cached.status === 'rejected');
    if (toDurable.status === 'fulfilled') {
      const earlier = repeated(toDurable.value);
      const inCache = cached.status === 'fulfilled' ? cached.value?.[0] : undefined;
      if (cacheMissed) this.t.markStale(op);
      // Redis had no copy to change (so one filled from PostgreSQL before this commit would lack
      // it), or it kept a message that PostgreSQL knew as a repeat: drop its copies now.
      else if (inCache === false || (earlier !== undefined && typeof inCache !== 'string')) await this.t.invalidateAfter(op, deadline);
      return earlier ?? repeated(cached.status === 'fulfilled' ? cached.value : undefined);
    }
    if (!isTierUnavailable(toDurable.reason)) {
      if (cache) this.t.markStale(op);
      throw toDurable.reason;
    }
    return this.#withoutDurable(op, deadline);
  }

  /**
   * Appends that arrived together, routed as one batch where that is the whole story (write-behind
   * into Redis; write-through into both tiers). Anything else (a tier down, a refusal) goes op by
   * op through route(), which handles every case; ops are idempotent, so a partial batch is safe to redo.
   */
  async appends(ops: AppendOp[]): Promise<(string | undefined)[]> {
    const { durable, cache, opts } = this.t;
    const deadline = Date.now() + this.t.budgetMs;
    const single = () => Promise.all(ops.map((op) => this.route(op, deadline)));
    if (ops.length === 1 || !durable) return single();
    if (cache?.up && opts.writeMode === 'write-behind') {
      try {
        await cache.call((c) => c.write(ops, { pending: true }), deadline);
        this.t.pendingInCache += ops.length;
        return ops.map(() => undefined);
      } catch (error) {
        this.t.cacheFailed(error);
        return single();
      }
    }
    if (!durable.up || opts.writeMode !== 'write-through') return single();
    const toCache = cache?.up ? cache.call((c) => c.write(ops), deadline) : undefined;
    const [toDurable, cached] = await Promise.allSettled([durable.call((d) => d.write(ops), deadline), toCache]);
    if (toDurable.status === 'rejected') return single();
    if (cache && (toCache === undefined || cached.status === 'rejected')) {
      for (const op of ops) this.t.markStale(op);
    } else if (cached.status === 'fulfilled' && cached.value) {
      const cold = new Set(ops.filter((_, i) => cached.value?.[i] === false).map((op) => op.user));
      if (cold.size > 0) await this.t.invalidate(cold, false, deadline).catch(() => ops.forEach((op) => cold.has(op.user) && this.t.markStale(op)));
    }
    return ops.map(() => undefined);
  }

  /** PostgreSQL is unreachable: journal in Redis (atomically with the write), else hold in RAM. */
  async #withoutDurable(op: Op, deadline: number): Promise<string | undefined> {
    const { cache, journal } = this.t;
    this.t.stats.count(this.t.durable?.name ?? 'memory', 'fallbacks');
    if (cache?.up) {
      try {
        const outcome = await cache.call((c) => c.write([op], { pending: true }), deadline);
        // A copy in RAM too, while there is room: a Redis restart before PostgreSQL is back loses nothing.
        if (repeated(outcome) === undefined && !journal.tryPush(op)) this.t.pendingInCache++;
        return repeated(outcome);
      } catch (error) {
        this.t.cacheFailed(error); // RAM it is
      }
    }
    const earlier = this.#hold(op);
    if (cache) this.t.markStale(op);
    return earlier;
  }

  /** Every server is unreachable: RAM and the journal take the write, or both refuse it. */
  #hold(op: Op): string | undefined {
    this.t.journal.assertRoom(op);
    const earlier = repeated(this.t.memory.writeSync([op]));
    if (earlier === undefined) this.t.journal.push(op);
    return earlier;
  }

  #erasePending(user: string): void {
    this.t.journal.dropUser(user);
    this.t.memory.forget(user);
  }
}

/** The earlier message's id when a single-op write repeated its idempotency key. */
function repeated(outcome: void | readonly WriteOutcome[] | undefined): string | undefined {
  const first = outcome?.[0];
  return typeof first === 'string' ? first : undefined;
}
