import type { AdapterConfig, HistoryRead, HistoryReadOptions, StorageAdapter, ThreadRecord, ThreadRecordPage, UserRecord, WriteOutcome } from './contract.js';
import { adapterInUse, ErrorCode, UnavailableError } from '../errors.js';
import { positive } from '../options.js';
import { applyOp, emptyUserState, findMessage, MAIN_THREAD, toMessage, type Op, type SummaryRecord, type UserState } from '../model/ops.js';
import type { Message } from '../types.js';
import { idTime } from '../model/ids.js';
import { opBytes } from '../model/sizes.js';

export interface MemoryAdapterOptions {
  /** Most messages held; past it, writes are refused with `STORE_FULL` rather than dropping anything. @default 100_000 */
  maxMessages?: number;
  /** Most bytes of messages held (approximate). @default 256 MiB */
  maxBytes?: number;
}

/**
 * The RAM tier: the whole store when no server is configured, the fallback when every server is
 * down. Bounded: it refuses writes past its limits instead of evicting what no other tier has.
 */
export class MemoryAdapter implements StorageAdapter {
  readonly name = 'memory';
  readonly timeoutMs = 0;
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly #users = new Map<string, UserState>();
  readonly #subscribers = new Set<string>();
  #messages = 0;
  #bytes = 0;
  #bound = false;

  constructor(options: MemoryAdapterOptions = {}) {
    this.maxMessages = positive(options.maxMessages, 'MemoryAdapter: maxMessages', 100_000);
    this.maxBytes = positive(options.maxBytes, 'MemoryAdapter: maxBytes', 256 * 1024 * 1024);
  }

  get size(): { users: number; messages: number; bytes: number } {
    return { users: this.#users.size, messages: this.#messages, bytes: this.#bytes };
  }

  bind(_config: AdapterConfig): void {
    if (this.#bound) throw adapterInUse('MemoryAdapter');
    this.#bound = true;
  }

  async connect(): Promise<void> {}
  async ping(): Promise<void> {}

  async write(ops: readonly Op[]): Promise<WriteOutcome[]> {
    return this.writeSync(ops);
  }

  /** Applies ops at once; all or nothing when they would pass the bound. */
  writeSync(ops: readonly Op[]): WriteOutcome[] {
    const adding = ops.filter((op) => op.kind === 'append');
    const bytes = adding.reduce((sum, op) => sum + opBytes(op), 0);
    if (adding.length > 0 && (this.#messages + adding.length > this.maxMessages || this.#bytes + bytes > this.maxBytes)) {
      throw new UnavailableError(
        ErrorCode.STORE_FULL,
        `the RAM tier is full (${this.#messages} messages, ${this.#bytes} bytes; limits ${this.maxMessages} and ${this.maxBytes}): write refused`,
      );
    }
    return ops.map((op) => this.#apply(op));
  }

  #apply(op: Op): WriteOutcome {
    let state = this.#users.get(op.user);
    if (!state) {
      state = emptyUserState();
      this.#users.set(op.user, state);
    }
    const first = op.kind === 'append' && op.key !== undefined ? state.keys.get(op.key) : undefined;
    if (first !== undefined && first !== op.id) return first;
    const reshapes = op.kind !== 'append' && op.kind !== 'phone' && op.kind !== 'booking' && op.kind !== 'subscribe' && op.kind !== 'summary';
    const before = reshapes ? messageBytes(state) : 0;
    const delta = applyOp(state, op);
    this.#messages += delta;
    if (op.kind === 'append') this.#bytes += delta * opBytes(op);
    else if (reshapes) this.#bytes -= before - messageBytes(state);
    if (state.subscribed.value) this.#subscribers.add(op.user);
    else this.#subscribers.delete(op.user);
    return true;
  }

  async readHistory(user: string, limit: number, options: HistoryReadOptions = {}): Promise<HistoryRead> {
    const state = this.#users.get(user);
    if (!state) return { messages: [], floor: '' };
    const thread = options.thread ?? MAIN_THREAD;
    const t = state.threads.get(thread);
    const messages = limit === 0 ? [] : state.messages.filter((m) => m.thread === thread).slice(-limit);
    const floor = t && t.floor > state.floor ? t.floor : state.floor;
    return { messages: messages.map(toMessage), floor, cuts: t?.cuts.map(([from, to]) => [from, to]) ?? [] };
  }

  async readSummary(user: string, thread: string): Promise<SummaryRecord | null> {
    const summary = this.#users.get(user)?.threads.get(thread)?.summary;
    return summary ? { ...summary } : null;
  }

  async readMessage(user: string, id: string): Promise<Message | null> {
    const state = this.#users.get(user);
    const found = state && findMessage(state, id);
    return found ? toMessage(found) : null;
  }

  /** Threads from the fold; the cursor is the offset of the next page. */
  async listThreads(user: string, limit: number, cursor: string | null): Promise<ThreadRecordPage> {
    const state = this.#users.get(user);
    if (!state) return { threads: [], cursor: null };
    const all = threadRecords(state);
    const start = cursor === null ? 0 : Number(cursor) || 0;
    const threads = all.slice(start, start + limit);
    return { threads, cursor: start + limit < all.length ? String(start + limit) : null };
  }

  /** Drafts still streaming that were created before `before`, oldest first. */
  async streamingDrafts(before: Date, limit: number): Promise<{ user: string; message: Message }[]> {
    const found: { user: string; message: Message }[] = [];
    for (const [user, state] of this.#users) {
      for (const m of state.messages) if (m.status === 'streaming' && m.createdAt < before.getTime()) found.push({ user, message: toMessage(m) });
    }
    found.sort((a, b) => a.message.createdAt.getTime() - b.message.createdAt.getTime());
    return found.slice(0, limit);
  }

  async readUser(user: string): Promise<UserRecord> {
    const { phone, booking, subscribed } = this.#users.get(user) ?? emptyUserState();
    return { phone: { ...phone }, booking: { ...booking }, subscribed: { ...subscribed } };
  }

  async readSubscribers(): Promise<string[]> {
    return [...this.#subscribers];
  }

  async isSubscriber(user: string): Promise<boolean> {
    return this.#subscribers.has(user);
  }

  isUnavailable(): boolean {
    return false;
  }

  /** Forgets one user entirely (the fallback's copy of an erased user). */
  forget(user: string): void {
    const state = this.#users.get(user);
    if (!state) return;
    this.#messages -= state.messages.length;
    this.#bytes -= messageBytes(state);
    this.#users.delete(user);
    this.#subscribers.delete(user);
  }

  /** Forgets everything (used once the fallback's contents reached the durable tier). */
  clear(): void {
    this.#users.clear();
    this.#subscribers.clear();
    this.#messages = 0;
    this.#bytes = 0;
  }

  async reset(): Promise<void> {}

  async close(): Promise<void> {}
}

/** A user's threads that hold messages or a title, most recently active first. */
export function threadRecords(state: UserState): ThreadRecord[] {
  const records = new Map<string, ThreadRecord>();
  for (const m of state.messages) {
    const at = new Date(Math.max(m.createdAt, m.updatedAt ?? 0));
    const record = records.get(m.thread);
    if (!record) {
      records.set(m.thread, { id: m.thread, title: null, messages: 1, createdAt: new Date(m.createdAt), updatedAt: at, lastId: m.id });
      continue;
    }
    record.messages++;
    record.lastId = m.id;
    if (at > record.updatedAt) record.updatedAt = at;
  }
  for (const [id, t] of state.threads) {
    if (t.title.value === null) continue;
    const at = new Date(idTime(t.title.id));
    const record = records.get(id) ?? { id, title: null, messages: 0, createdAt: at, updatedAt: at, lastId: '' };
    record.title = t.title.value;
    if (at > record.updatedAt) record.updatedAt = at;
    records.set(id, record);
  }
  return [...records.values()].sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || (a.id < b.id ? -1 : 1));
}

function messageBytes(state: UserState): number {
  return state.messages.reduce((sum, m) => sum + opBytes(m), 0);
}
