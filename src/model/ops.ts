import type { JsonObject, Message, Role } from '../types.js';

/**
 * Every write becomes an op with a time-ordered id. Ops are idempotent and commute: each field is
 * last-writer-wins by op id and clears/deletes set a floor below which messages are gone, so
 * replaying ops more than once or out of order (journals, retries, several syncers) converges.
 */
export type Op =
  | { kind: 'append'; user: string; id: string; role: Role; content: string; createdAt: number; meta?: JsonObject; key?: string }
  | { kind: 'clear'; user: string; id: string }
  | { kind: 'phone'; user: string; id: string; phone: string | null }
  | { kind: 'booking'; user: string; id: string; booking: JsonObject | null }
  | { kind: 'subscribe'; user: string; id: string; subscribed: boolean }
  | { kind: 'delete'; user: string; id: string };

export type AppendOp = Extract<Op, { kind: 'append' }>;

export interface Stamped<T> {
  value: T;
  /** Id of the op that set the value; '' when never set. */
  id: string;
}

/** One user's state as the fold of every op applied to it. */
export interface UserState {
  /** Sorted by id. */
  messages: AppendOp[];
  /** Messages with an id at or below the floor were cleared or deleted. */
  floor: string;
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
    phone: { value: null, id: '' },
    booking: { value: null, id: '' },
    subscribed: { value: false, id: '' },
  };
}

/** Applies one op in place; returns the change in the number of stored messages. */
export function applyOp(state: UserState, op: Op): number {
  switch (op.kind) {
    case 'append': {
      if (op.id <= state.floor) return 0;
      const first = op.key === undefined ? undefined : state.keys.get(op.key);
      if (first !== undefined && first !== op.id) return 0;
      if (op.key !== undefined) state.keys.set(op.key, op.id);
      return insertMessage(state.messages, op);
    }
    case 'clear':
      return raiseFloor(state, op.id);
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
      return raiseFloor(state, op.id);
  }
}

function setStamped<T>(field: Stamped<T>, value: T, id: string): void {
  if (id > field.id) {
    field.value = value;
    field.id = id;
  }
}

function raiseFloor(state: UserState, id: string): number {
  if (id <= state.floor) return 0;
  state.floor = id;
  // A key names a message: once the message is gone, a re-delivery is a new message (as in PostgreSQL).
  for (const [key, named] of state.keys) if (named <= id) state.keys.delete(key);
  const keep = state.messages.findIndex((m) => m.id > id);
  const removed = keep === -1 ? state.messages.length : keep;
  state.messages.splice(0, removed);
  return -removed;
}

// Appends nearly always arrive in id order, so search from the end.
function insertMessage(messages: AppendOp[], op: AppendOp): number {
  let i = messages.length;
  while (i > 0 && (messages[i - 1] as AppendOp).id > op.id) i--;
  if (i > 0 && (messages[i - 1] as AppendOp).id === op.id) return 0;
  messages.splice(i, 0, op);
  return 1;
}

export function toMessage(op: AppendOp): Message {
  const message: Message = { id: op.id, role: op.role, content: op.content, createdAt: new Date(op.createdAt) };
  if (op.meta !== undefined) message.meta = op.meta;
  return message;
}

export function fromMessage(user: string, message: Message): AppendOp {
  const op: AppendOp = {
    kind: 'append',
    user,
    id: message.id,
    role: message.role,
    content: message.content,
    createdAt: message.createdAt.getTime(),
  };
  if (message.meta !== undefined) op.meta = message.meta;
  return op;
}

/**
 * Newest `limit` messages of a durable read with pending ops (not yet durable) laid over it.
 * `floor` is the durable tier's floor, so a pending append older than a durable clear stays gone.
 */
export function mergeHistory(durable: Message[], floor: string, user: string, pending: readonly Op[], limit: number): Message[] {
  if (pending.length === 0) return durable.length > limit ? durable.slice(-limit) : durable;
  const state = emptyUserState();
  state.floor = floor;
  for (const message of durable) state.messages.push(fromMessage(user, message));
  for (const op of pending) if (op.user === user) applyOp(state, op);
  return state.messages.slice(-limit).map(toMessage);
}
