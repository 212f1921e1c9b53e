import { ErrorCode, StoreError } from '../errors.js';
import type { AppendOp, Op } from './ops.js';
import type { JsonObject, Message, Role } from '../types.js';

/*
 * How ops and messages are written as text (Redis items and journal entries). Every encoding
 * starts with {"id":"<id>" so Lua can read the id without parsing JSON.
 */

interface StoredMessage {
  id: string;
  role: Role;
  content: string;
  createdAt: number;
  meta?: JsonObject;
  key?: string;
}

export function encodeMessage(op: AppendOp): string {
  const meta = op.meta === undefined ? '' : `,"meta":${JSON.stringify(op.meta)}`;
  const key = op.key === undefined ? '' : `,"key":${JSON.stringify(op.key)}`;
  return `{"id":"${op.id}","role":"${op.role}","content":${JSON.stringify(op.content)},"createdAt":${op.createdAt}${meta}${key}}`;
}

export function decodeMessage(text: string): Message {
  // The parsed object becomes the message (no copy): only createdAt changes type, the key goes.
  const message = JSON.parse(text) as Omit<StoredMessage, 'createdAt'> & { createdAt: number | Date };
  message.createdAt = new Date(message.createdAt);
  if (message.key !== undefined) delete message.key;
  return message as Message;
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
    default:
      return `{"id":"${op.id}","kind":"${op.kind}"}`;
  }
}

export function decodeOp(user: string, text: string): Op {
  const entry = JSON.parse(text) as { id: string; kind?: Op['kind']; value?: unknown } & Partial<StoredMessage>;
  const { id } = entry;
  switch (entry.kind) {
    case undefined: {
      const op: AppendOp = { kind: 'append', user, id, role: entry.role as Role, content: entry.content as string, createdAt: entry.createdAt as number };
      if (entry.meta !== undefined) op.meta = entry.meta;
      if (entry.key !== undefined) op.key = entry.key;
      return op;
    }
    case 'phone':
      return { kind: 'phone', user, id, phone: entry.value as string | null };
    case 'booking':
      return { kind: 'booking', user, id, booking: entry.value as JsonObject | null };
    case 'subscribe':
      return { kind: 'subscribe', user, id, subscribed: entry.value as boolean };
    case 'clear':
    case 'delete':
      return { kind: entry.kind, user, id };
    default:
      throw new StoreError(ErrorCode.UNREADABLE_ENTRY, `unknown journal entry kind ${String(entry.kind)}`);
  }
}
