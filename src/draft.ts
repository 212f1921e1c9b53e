import { ErrorCode, StoreError } from './errors.js';
import { nextId } from './model/ids.js';
import type { AppendOp, EditOp } from './model/ops.js';
import { toMessage } from './model/ops.js';
import type { JsonObject, Message } from './types.js';

/** What a draft needs from the store. */
export interface DraftHost {
  /** Writes the draft's progress where it is fast (Redis, or RAM); never journaled, never waited for by `update`. */
  flush(op: EditOp): Promise<void>;
  /** Writes the final state like any other write: durable, journaled through outages. */
  commit(op: EditOp): Promise<void>;
  /** Checks the final text and meta (sizes, JSON) before anything is written. */
  check(content: string, meta: JsonObject | undefined): { content: string; meta: JsonObject | undefined };
  /** The final text's token count by the store's countTokens (checked: throws INVALID_TOKEN_COUNT). */
  count(content: string, meta: JsonObject | undefined): number;
  flushMs: number;
  /** The store forgets the draft once it is closed. */
  closed(id: string): void;
}

/**
 * A streamed answer being written. `update` replaces its text and returns at once; the text
 * reaches Redis (or RAM) at most once per `flushMs`, so a process that dies mid-stream loses at
 * most that much. `finish` and `abort` write the final state durably.
 */
export class Draft {
  #text: string;
  #meta: JsonObject | undefined;
  #flushedText: string;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #closed = false;
  /** The start was just written: the first progress waits a full period too. */
  #lastFlushAt = Date.now();

  constructor(
    private readonly host: DraftHost,
    private readonly start: AppendOp,
  ) {
    this.#text = start.content;
    this.#flushedText = start.content;
    this.#meta = start.meta;
  }

  get id(): string {
    return this.start.id;
  }

  get thread(): string {
    return this.start.thread;
  }

  /** The text so far (what `update` last set). */
  get text(): string {
    return this.#text;
  }

  /** Replaces the draft's content; written at most once per `draftFlushMs`. Throws `DRAFT_CLOSED` after finish or abort. */
  update(text: string): void {
    this.#assertOpen();
    this.#text = this.host.check(text, this.#meta).content;
    if (this.#timer) return;
    const wait = Math.max(0, this.#lastFlushAt + this.host.flushMs - Date.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#lastFlushAt = Date.now();
      this.#flushing = this.#flush();
    }, wait);
    this.#timer.unref?.();
  }

  /** Completes the message (with `finalText`, else the text so far): durable like addMemory; the status goes. */
  async finish(finalText?: string, options: { meta?: JsonObject } = {}): Promise<Message> {
    this.#assertOpen();
    const checked = this.host.check(finalText ?? this.#text, options.meta ?? this.#meta);
    return this.#close(checked.content, checked.meta, undefined, this.host.count(checked.content, checked.meta));
  }

  /** Stops the draft, keeping what was streamed, with status 'aborted'; durable. */
  async abort(): Promise<Message> {
    this.#assertOpen();
    return this.#close(this.#text, this.#meta, 'aborted', this.host.count(this.#text, this.#meta));
  }

  async #close(content: string, meta: JsonObject | undefined, status: 'aborted' | undefined, tokens: number): Promise<Message> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#flushing;
    const op = this.#edit(content, meta, status);
    op.tokens = tokens;
    try {
      await this.host.commit(op);
    } catch (error) {
      this.#closed = false;
      throw error;
    }
    this.host.closed(this.id);
    const message = toMessage({ ...this.start, content, tokens });
    if (meta === undefined) delete message.meta;
    else message.meta = meta;
    if (status) message.status = status;
    else delete message.status;
    return message;
  }

  // A flush carries no count (countTokens stays off the streaming path): a draft's progress reads
  // with the default formula, and drafts are left out of budget reads anyway.
  async #flush(): Promise<void> {
    if (this.#closed || this.#text === this.#flushedText) return;
    const text = this.#text;
    await this.host.flush(this.#edit(text, this.#meta, 'streaming')).catch(() => {});
    this.#flushedText = text;
  }

  #edit(content: string, meta: JsonObject | undefined, status: EditOp['status']): EditOp {
    const op: EditOp = { kind: 'edit', user: this.start.user, id: nextId(), thread: this.start.thread, target: this.start.id, content };
    if (meta !== undefined) op.meta = meta;
    if (status !== undefined) op.status = status;
    return op;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError(ErrorCode.DRAFT_CLOSED, `draft ${this.id} is finished or aborted`);
  }
}
