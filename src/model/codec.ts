import { ErrorCode, StoreError } from '../errors.js';
import { MAIN_THREAD, type AppendOp, type Op } from './ops.js';
import type { JsonObject, Message, MessageStatus, Role } from '../types.js';
import { defaultTokens } from './budget.js';

/*
 * How ops and messages are written as text (Redis items and journal entries). Every encoding
 * starts with {"id":"<id>" so Lua can read the id without parsing JSON; an edited message follows
 * it with ,"v":"<edit id>" (characters 35-66), so Lua can read the edit stamp too. The token count
 * ,"tokens":N comes just before updatedAt (which, when present, ends the item). Fields with
 * their default value ('main' thread, no status) are left out: 0.1's entries read the same.
 */

interface StoredMessage {
  id: string;
  v?: string;
  role: Role;
  content: string;
  createdAt: number;
  thread?: string;
  meta?: JsonObject;
  key?: string;
  status?: MessageStatus;
  updatedAt?: number;
  tokens?: number;
}

export function encodeMessage(op: AppendOp): string {
  const v = op.v === undefined ? '' : `,"v":"${op.v}"`;
  const thread = op.thread === MAIN_THREAD ? '' : `,"thread":"${op.thread}"`;
  const meta = op.meta === undefined ? '' : `,"meta":${JSON.stringify(op.meta)}`;
  const key = op.key === undefined ? '' : `,"key":${JSON.stringify(op.key)}`;
  const status = op.status === undefined ? '' : `,"status":"${op.status}"`;
  const tokens = op.tokens === undefined ? '' : `,"tokens":${op.tokens}`;
  const updated = op.updatedAt === undefined ? '' : `,"updatedAt":${op.updatedAt}`;
  return `{"id":"${op.id}"${v},"role":"${op.role}","content":${JSON.stringify(op.content)},"createdAt":${op.createdAt}${thread}${meta}${key}${status}${tokens}${updated}}`;
}

/** A stored item as a Message; `thread` names the list it was read from when the item does not say (0.1's items). */
export function decodeMessage(text: string, thread = MAIN_THREAD): Message {
  // The parsed object becomes the message (no copy): dates change type, the key and stamp go.
  const message = JSON.parse(text) as Omit<StoredMessage, 'createdAt' | 'updatedAt'> & { createdAt: number | Date; updatedAt?: number | Date };
  message.createdAt = new Date(message.createdAt);
  if (message.updatedAt !== undefined) message.updatedAt = new Date(message.updatedAt);
  message.thread ??= thread;
  // Items written before token counts (0.1, or a draft's progress) count by the default formula.
  message.tokens ??= defaultTokens(message as { content: string });
  if (message.key !== undefined) delete message.key;
  if (message.v !== undefined) delete message.v;
  return message as Message;
}

/** The stored form of an item, stamp and key included (for folds over a cache's copy). */
export function decodeStored(user: string, text: string, thread = MAIN_THREAD): AppendOp {
  const entry = JSON.parse(text) as StoredMessage;
  return appendOf(user, entry, thread);
}

function appendOf(user: string, entry: StoredMessage, thread: string): AppendOp {
  const op: AppendOp = {
    kind: 'append',
    user,
    id: entry.id,
    thread: entry.thread ?? thread,
    role: entry.role,
    content: entry.content,
    createdAt: entry.createdAt,
  };
  if (entry.meta !== undefined) op.meta = entry.meta;
  if (entry.key !== undefined) op.key = entry.key;
  if (entry.status !== undefined) op.status = entry.status;
  if (entry.updatedAt !== undefined) op.updatedAt = entry.updatedAt;
  if (entry.tokens !== undefined) op.tokens = entry.tokens;
  if (entry.v !== undefined) op.v = entry.v;
  return op;
}

/** A journal entry: an append is its message; other ops carry their kind and value. */
export function encodeOp(op: Op): string {
  switch (op.kind) {
    case 'append':
      return encodeMessage(op);
    case 'phone':
      return `{"id":"${op.id}","kind":"phone","value":${JSON.stringify(op.phone)}}`;
    case 'booking':
      return `{"id":"${op.id}","kind":"booking","value":${JSON.stringify(op.booking)}}`;
    case 'subscribe':
      return `{"id":"${op.id}","kind":"subscribe","value":${op.subscribed}}`;
    case 'clear':
    case 'dropThread':
      return `{"id":"${op.id}","kind":"${op.kind}","thread":"${op.thread}"}`;
    case 'title':
      return `{"id":"${op.id}","kind":"title","thread":"${op.thread}","value":${JSON.stringify(op.title)}}`;
    case 'cut':
      return `{"id":"${op.id}","kind":"cut","thread":"${op.thread}","from":"${op.from}","to":"${op.to}"}`;
    case 'edit': {
      const meta = op.meta === undefined ? '' : `,"meta":${JSON.stringify(op.meta)}`;
      const status = op.status === undefined ? '' : `,"status":"${op.status}"`;
      const tokens = op.tokens === undefined ? '' : `,"tokens":${op.tokens}`;
      const updated = op.updatedAt === undefined ? '' : `,"updatedAt":${op.updatedAt}`;
      return `{"id":"${op.id}","kind":"edit","thread":"${op.thread}","target":"${op.target}","content":${JSON.stringify(op.content)}${meta}${status}${tokens}${updated}}`;
    }
    case 'delete':
      return `{"id":"${op.id}","kind":"delete"}`;
    case 'summary':
      return `{"id":"${op.id}","kind":"summary","thread":"${op.thread}","covers":"${op.covers}","value":${JSON.stringify(op.text)}}`;
  }
}

export function decodeOp(user: string, text: string): Op {
  const entry = JSON.parse(text) as {
    id: string;
    kind?: Op['kind'];
    value?: unknown;
    target?: string;
    from?: string;
    to?: string;
    covers?: string;
  } & Partial<StoredMessage>;
  const { id } = entry;
  const thread = entry.thread ?? MAIN_THREAD;
  switch (entry.kind) {
    case undefined:
      return appendOf(user, entry as StoredMessage, MAIN_THREAD);
    case 'phone':
      return { kind: 'phone', user, id, phone: entry.value as string | null };
    case 'booking':
      return { kind: 'booking', user, id, booking: entry.value as JsonObject | null };
    case 'subscribe':
      return { kind: 'subscribe', user, id, subscribed: entry.value as boolean };
    case 'clear':
    case 'dropThread':
      return { kind: entry.kind, user, id, thread };
    case 'title':
      return { kind: 'title', user, id, thread, title: entry.value as string | null };
    case 'cut':
      return { kind: 'cut', user, id, thread, from: entry.from as string, to: entry.to as string };
    case 'edit': {
      const op: Op = { kind: 'edit', user, id, thread, target: entry.target as string, content: entry.content as string };
      if (entry.meta !== undefined) op.meta = entry.meta;
      if (entry.status !== undefined) op.status = entry.status;
      if (entry.updatedAt !== undefined) op.updatedAt = entry.updatedAt;
      if (entry.tokens !== undefined) op.tokens = entry.tokens;
      return op;
    }
    case 'delete':
      return { kind: 'delete', user, id };
    case 'summary':
      return { kind: 'summary', user, id, thread, text: entry.value as string, covers: entry.covers as string };
    default:
      throw new StoreError(ErrorCode.UNREADABLE_ENTRY, `unknown journal entry kind ${String(entry.kind)}`);
  }
}
