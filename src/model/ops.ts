import type { JsonObject, Message, MessageStatus, Role } from '../types.js';
import { defaultTokens } from './budget.js';

/** The thread of a message written without one, and of every message written by 0.1. */
export const MAIN_THREAD = 'main';

/**
 * Every write becomes an op with a time-ordered id. Ops are idempotent and commute: each field is
 * last-writer-wins by op id, and clears, deletes and cuts remove a range of ids for good (a
 * replay never brings a removed message back), so replaying ops more than once or out of order
 * (journals, retries, several syncers) converges. An edit changes a message that is there; the
 * store sends an edit of a message still pending through the journal behind it.
 */
export type Op =
  | AppendOp
  | { kind: 'clear'; user: string; id: string; thread: string }
  | EditOp
  | CutOp
  | { kind: 'title'; user: string; id: string; thread: string; title: string | null }
  | { kind: 'dropThread'; user: string; id: string; thread: string }
  | { kind: 'phone'; user: string; id: string; phone: string | null }
  | { kind: 'booking'; user: string; id: string; booking: JsonObject | null }
  | { kind: 'subscribe'; user: string; id: string; subscribed: boolean }
  | { kind: 'delete'; user: string; id: string }
  | SummaryOp;

/**
 * A thread's rolling summary (last writer by op id wins): `text` sums up the thread's messages up
 * to `covers`, the id of the newest message it covers. A clear or drop of the thread, or a delete
 * of the user, with an id at or above the summary's erases it, and a summary op at or below such a
 * floor is never stored again. An edit or cut of a covered message applied after the summary, with
 * an id above the summary's, marks it `dirty` (for a rerun).
 */
export interface SummaryOp {
  kind: 'summary';
  user: string;
  id: string;
  thread: string;
  text: string;
  covers: string;
}

/** A thread's stored summary; `dirty`: the id of a change of a covered message made after it ('' none). */
export interface SummaryRecord {
  text: string;
  id: string;
  covers: string;
  dirty: string;
}

/** A new message (a draft when `status` is 'streaming'). Stored, it also carries its edit stamp `v` and `updatedAt`. */
export interface AppendOp {
  kind: 'append';
  user: string;
  id: string;
  thread: string;
  role: Role;
  content: string;
  createdAt: number;
  meta?: JsonObject;
  key?: string;
  status?: MessageStatus;
  /** Id of the last edit applied (stored messages only). */
  v?: string;
  /** When a person last edited it, in ms (stored messages only). */
  updatedAt?: number;
  /** Its token count as the store's `countTokens` gave it; absent: the default formula applies on read. */
  tokens?: number;
}

/**
 * Replaces message `target`'s content, meta and status as a whole (last writer by op id wins):
 * updateMessage, a Telegram edit, a draft's flush, finish or abort. `updatedAt` is set by edits a
 * person made, not by a draft's progress.
 */
export interface EditOp {
  kind: 'edit';
  user: string;
  id: string;
  thread: string;
  target: string;
  content: string;
  meta?: JsonObject;
  status?: MessageStatus;
  updatedAt?: number;
  /** The token count of the new content (replaced like the rest; absent: the default formula applies on read). */
  tokens?: number;
}

/** Removes the messages of `thread` with `from <= id <= to`, for good: deleteMessage (one id) and truncateAfter. */
export interface CutOp {
  kind: 'cut';
  user: string;
  id: string;
  thread: string;
  from: string;
  to: string;
}

/** Marks ids just above `id` (every longer id of the same length is above it too): the start of "after this message". */
export function after(id: string): string {
  return `${id}!`;
}

export interface Stamped<T> {
  value: T;
  /** Id of the op that set the value; '' when never set. */
  id: string;
}

export interface ThreadState {
  /** Messages of the thread with an id at or below it were cleared. */
  floor: string;
  /** Removed id ranges [from, to] above the floor. */
  cuts: [string, string][];
  title: Stamped<string | null>;
  /** The thread's rolling summary, if any. */
  summary?: SummaryRecord | undefined;
}

/** One user's state as the fold of every op applied to it. */
export interface UserState {
  /** Every thread's messages, sorted by id. */
  messages: AppendOp[];
  /** Messages with an id at or below the floor were deleted with the user. */
  floor: string;
  threads: Map<string, ThreadState>;
  phone: Stamped<string | null>;
  booking: Stamped<JsonObject | null>;
  subscribed: Stamped<boolean>;
  /** Idempotency keys of stored messages, to the id of the message each first came with. */
  keys: Map<string, string>;
}

export function emptyUserState(): UserState {
  return {
    keys: new Map(),
    messages: [],
    floor: '',
    threads: new Map(),
    phone: { value: null, id: '' },
    booking: { value: null, id: '' },
    subscribed: { value: false, id: '' },
  };
}

export function threadState(state: UserState, thread: string): ThreadState {
  let t = state.threads.get(thread);
  if (!t) {
    t = { floor: '', cuts: [], title: { value: null, id: '' } };
    state.threads.set(thread, t);
  }
  return t;
}

/** Whether a message of `thread` with id `id` was removed (by a delete of the user, a clear, or a cut). */
export function isRemoved(state: UserState, thread: string, id: string): boolean {
  if (id <= state.floor) return true;
  const t = state.threads.get(thread);
  return t !== undefined && removedIn(t.floor, t.cuts, id);
}

export function removedIn(floor: string, cuts: readonly (readonly [string, string])[], id: string): boolean {
  return id <= floor || cuts.some(([from, to]) => from <= id && id <= to);
}

/** Applies one op in place; returns the change in the number of stored messages. */
export function applyOp(state: UserState, op: Op): number {
  switch (op.kind) {
    case 'append': {
      if (isRemoved(state, op.thread, op.id)) return 0;
      const first = op.key === undefined ? undefined : state.keys.get(op.key);
      if (first !== undefined && first !== op.id) return 0;
      if (op.key !== undefined) state.keys.set(op.key, op.id);
      return insertMessage(state.messages, op);
    }
    case 'edit': {
      markDirty(state.threads.get(op.thread), op.id, op.target);
      const message = findMessage(state, op.target);
      if (message && (message.v ?? '') < op.id) applyEdit(message, op);
      return 0;
    }
    case 'summary': {
      const t = threadState(state, op.thread);
      if (op.id <= state.floor || op.id <= t.floor || (t.summary && t.summary.id >= op.id)) return 0;
      const dirty = t.summary && t.summary.dirty > op.id ? t.summary.dirty : '';
      t.summary = { text: op.text, id: op.id, covers: op.covers, dirty };
      return 0;
    }
    case 'clear': {
      const t = threadState(state, op.thread);
      if (t.summary && t.summary.id <= op.id) t.summary = undefined;
      if (op.id <= t.floor) return 0;
      t.floor = op.id;
      t.cuts = t.cuts.filter(([, to]) => to > op.id);
      return -removeWhere(state, (m) => m.thread === op.thread && m.id <= op.id);
    }
    case 'cut': {
      const t = threadState(state, op.thread);
      markDirty(t, op.id, op.from);
      if (!t.cuts.some(([from, to]) => from === op.from && to === op.to)) t.cuts.push([op.from, op.to]);
      return -removeWhere(state, (m) => m.thread === op.thread && op.from <= m.id && m.id <= op.to);
    }
    case 'title':
      setStamped(threadState(state, op.thread).title, op.title, op.id);
      return 0;
    case 'dropThread':
      setStamped(threadState(state, op.thread).title, null, op.id);
      return applyOp(state, { kind: 'clear', user: op.user, id: op.id, thread: op.thread });
    case 'phone':
      setStamped(state.phone, op.phone, op.id);
      return 0;
    case 'booking':
      setStamped(state.booking, op.booking, op.id);
      return 0;
    case 'subscribe':
      setStamped(state.subscribed, op.subscribed, op.id);
      return 0;
    case 'delete':
      setStamped(state.phone, null, op.id);
      setStamped(state.booking, null, op.id);
      setStamped(state.subscribed, false, op.id);
      for (const t of state.threads.values()) {
        setStamped(t.title, null, op.id);
        if (t.summary && t.summary.id <= op.id) t.summary = undefined;
      }
      if (op.id <= state.floor) return 0;
      state.floor = op.id;
      return -removeWhere(state, (m) => m.id <= op.id);
  }
}

/** An edit or cut (`lowest`: the lowest id it changes) newer than the summary that touches a covered message marks it for a rerun. */
function markDirty(t: ThreadState | undefined, id: string, lowest: string): void {
  const summary = t?.summary;
  if (summary && id > summary.id && lowest <= summary.covers && id > summary.dirty) summary.dirty = id;
}

export function applyEdit(message: AppendOp, op: EditOp): void {
  message.content = op.content;
  if (op.meta === undefined) delete message.meta;
  else message.meta = op.meta;
  if (op.status === undefined) delete message.status;
  else message.status = op.status;
  if (op.updatedAt !== undefined) message.updatedAt = op.updatedAt;
  if (op.tokens === undefined) delete message.tokens;
  else message.tokens = op.tokens;
  message.v = op.id;
}

/** The stored message with id `id` (any thread), or undefined. */
export function findMessage(state: UserState, id: string): AppendOp | undefined {
  const { messages } = state;
  let lo = 0;
  let hi = messages.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = messages[mid] as AppendOp;
    if (m.id === id) return m;
    if (m.id < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

function setStamped<T>(field: Stamped<T>, value: T, id: string): void {
  if (id > field.id) {
    field.value = value;
    field.id = id;
  }
}

/** Removes messages; a key names a message, so once it is gone a re-delivery is a new message (as in PostgreSQL). */
function removeWhere(state: UserState, doomed: (m: AppendOp) => boolean): number {
  const before = state.messages.length;
  const gone = new Set<string>();
  state.messages = state.messages.filter((m) => {
    if (!doomed(m)) return true;
    gone.add(m.id);
    return false;
  });
  if (gone.size > 0) for (const [key, named] of state.keys) if (gone.has(named)) state.keys.delete(key);
  return before - state.messages.length;
}

// Appends nearly always arrive in id order, so search from the end.
function insertMessage(messages: AppendOp[], op: AppendOp): number {
  let i = messages.length;
  while (i > 0 && (messages[i - 1] as AppendOp).id > op.id) i--;
  if (i > 0 && (messages[i - 1] as AppendOp).id === op.id) return 0;
  messages.splice(i, 0, { ...op });
  return 1;
}

export function toMessage(op: AppendOp): Message {
  const message: Message = {
    id: op.id,
    role: op.role,
    content: op.content,
    createdAt: new Date(op.createdAt),
    thread: op.thread,
    tokens: op.tokens ?? defaultTokens(op),
  };
  if (op.meta !== undefined) message.meta = op.meta;
  if (op.status !== undefined) message.status = op.status;
  if (op.updatedAt !== undefined) message.updatedAt = new Date(op.updatedAt);
  return message;
}

/** The stored form of a message read back from a tier (`v`: the id of the last edit it had, when known). */
export function fromMessage(user: string, message: Message, v?: string): AppendOp {
  const op: AppendOp = {
    kind: 'append',
    user,
    id: message.id,
    thread: message.thread,
    role: message.role,
    content: message.content,
    createdAt: message.createdAt.getTime(),
  };
  if (message.meta !== undefined) op.meta = message.meta;
  if (message.status !== undefined) op.status = message.status;
  if (message.updatedAt !== undefined) op.updatedAt = message.updatedAt.getTime();
  if (message.tokens !== undefined) op.tokens = message.tokens;
  if (v !== undefined) op.v = v;
  return op;
}

/** The thread an op changes messages of, if any. */
export function threadOf(op: Op): string | undefined {
  return 'thread' in op ? op.thread : undefined;
}

/**
 * Newest `limit` messages of `thread` from a durable read with pending ops (not yet durable) laid
 * over it. `floor` and `cuts` are what the durable tier removed from that thread (the user's
 * floor included), so a pending append the durable tier already removed stays gone.
 */
export function mergeHistory(
  durable: Message[],
  removed: { floor: string; cuts?: readonly [string, string][] },
  user: string,
  thread: string,
  pending: readonly Op[],
  limit: number,
): Message[] {
  const relevant = pending.filter((op) => op.user === user && (op.kind === 'delete' || threadOf(op) === thread || op.kind === 'edit'));
  if (relevant.length === 0) return durable.length > limit ? durable.slice(-limit) : durable;
  const state = emptyUserState();
  const t = threadState(state, thread);
  t.floor = removed.floor;
  t.cuts = (removed.cuts ?? []).map(([from, to]) => [from, to]);
  for (const message of durable) state.messages.push(fromMessage(user, message));
  for (const op of relevant) applyOp(state, op);
  const messages = state.messages.filter((m) => m.thread === thread);
  return messages.slice(-limit).map(toMessage);
}
