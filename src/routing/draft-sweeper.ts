import type { StorageAdapter } from '../adapters/contract.js';
import type { CacheAdapter } from '../cache/contract.js';
import { nextId } from '../model/ids.js';
import type { EditOp } from '../model/ops.js';
import type { Message } from '../types.js';
import type { Breaker } from './breaker.js';
import type { Reads } from './reads.js';
import type { Writes } from './writes.js';

export interface DraftSweeperDeps {
  /** The final text's token count (undefined when countTokens refuses it: the default formula then counts it on read). */
  count(message: Pick<Message, 'role' | 'content' | 'meta' | 'thread' | 'id'>): number | undefined;
  durable: Breaker<StorageAdapter>;
  redis: Breaker<CacheAdapter> | undefined;
  reads: Reads;
  writes: Writes;
  /** Whether this process is still streaming the draft. */
  live(id: string): boolean;
  timeoutMs: number;
  budgetMs: number;
}

const PER_PASS = 100;

/**
 * Finishes drafts whose process died: a draft neither updated nor finished for `draftTimeoutMs`
 * becomes 'aborted' with the text that reached Redis (or the durable tier). Runs in sync passes;
 * the finishing edit is an ordinary write (journaled through outages, idempotent: two processes
 * sweeping the same draft write the same outcome, the newest edit winning).
 */
export class DraftSweeper {
  constructor(private readonly d: DraftSweeperDeps) {}

  /** One sweep; resolves how many drafts it finished. */
  async sweep(): Promise<number> {
    const before = Date.now() - this.d.timeoutMs;
    const candidates = new Map<string, { user: string; id: string; message?: Message }>();
    const { durable, redis } = this.d;
    if (durable.up && durable.adapter.streamingDrafts) {
      for (const { user, message } of await durable.call((a) => a.streamingDrafts?.(new Date(before), PER_PASS) ?? Promise.resolve([]))) {
        candidates.set(message.id, { user, id: message.id, message });
      }
    }
    if (redis?.up && redis.adapter.staleDrafts) {
      for (const { user, id } of await redis.call((a) => a.staleDrafts?.(before, PER_PASS) ?? Promise.resolve([]))) {
        if (!candidates.has(id)) candidates.set(id, { user, id });
      }
    }
    let finished = 0;
    for (const candidate of candidates.values()) {
      if (this.d.live(candidate.id)) continue;
      if (await this.#finish(candidate, before)) finished++;
    }
    return finished;
  }

  async #finish(candidate: { user: string; id: string; message?: Message }, before: number): Promise<boolean> {
    const { redis, reads, writes } = this.d;
    const deadline = Date.now() + this.d.budgetMs;
    const progress =
      redis?.up && redis.adapter.draftProgress ? await redis.call((a) => a.draftProgress?.(candidate.user, candidate.id) ?? Promise.resolve(null)) : null;
    if (progress && progress.at > before) return false;
    const found = await reads.message(candidate.user, candidate.id, deadline);
    if (found.message?.status !== 'streaming') return false;
    // The text that reached Redis is the furthest the stream got; the durable copy may lag it.
    const latest = progress?.message ?? found.message;
    const op: EditOp = {
      kind: 'edit',
      user: candidate.user,
      id: nextId(),
      thread: found.message.thread,
      target: candidate.id,
      content: latest.content,
      status: 'aborted',
    };
    if (latest.meta !== undefined) op.meta = latest.meta;
    const tokens = this.d.count({ ...latest, role: found.message.role, thread: found.message.thread, id: candidate.id });
    if (tokens !== undefined) op.tokens = tokens;
    await writes.route(op, deadline, found.pending);
    return true;
  }
}
