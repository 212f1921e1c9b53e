import { ErrorCode, StoreError } from '../errors.js';
import { MAIN_THREAD, type AppendOp, type Op } from './ops.js';
import type { JsonObject, Message, MessageStatus, Role } from '../types.js';
import { defaultTokens } from './budget.js';
import { idTime } from './ids.js';

/*
 * How ops and messages are written as text (Redis items and journal entries).
 *
 * A message (a history item, and an append's journal entry) is compact: a fixed-position header,
 * then the content as it is, so Lua reads the id and the edit stamp by position and Redis keeps
 * little more than the content:
 *
 *   <head: 1><id: 22>[<edit stamp: 26>][<tail: JSON object>\n]<content>
 *
 * head: one of 0-9A-V, the role (system, user, assistant, tool) x 8 + flags. The id is the
 * 26-character id (Crockford base32, 130 bits) in 22 characters of an alphabet in ASCII order
 * (-0-9A-Z_a-z), so the two sort alike. An id that is not Crockford base32 (the adapter's callers
 * may make their own) keeps the longer form <role: s u a t><id: 26><flags: one digit>...
 * flags: 1 an edit stamp follows the id; 2 a tail follows (JSON text holds no raw line break, so
 * the first one after it starts the content); 4 the token count is the default formula's. The
 * tail holds only the rare fields, in this order: c createdAt (when it is not the time the id
 * encodes), h thread (when not 'main': a list's key names its thread, a journal's does not), k
 * idempotency key, m meta, s status, t token count (when not the default), u updatedAt.
 *
 * Items written before (0.1, 0.2) are JSON starting with {"id":"<id>", optionally followed by
 * ,"v":"<edit stamp>" (characters 35-66); they read the same, and Lua tells the two apart by the
 * first character. Other ops' journal entries are JSON starting with {"id":"<id>".
 */

const ROLE_CHAR: Record<Role, string> = { system: 's', user: 'u', assistant: 'a', tool: 't' };
const CHAR_ROLE: Record<string, Role> = { s: 'system', u: 'user', a: 'assistant', t: 'tool' };
const ROLE_INDEX: Record<Role, number> = { system: 0, user: 1, assistant: 2, tool: 3 };
const INDEX_ROLE: Role[] = ['system', 'user', 'assistant', 'tool'];
/** The head of a dense item: role x 8 + flags. */
const HEADS = '0123456789ABCDEFGHIJKLMNOPQRSTUV';
/** An id whose first 10 characters are a time (Crockford base32): only then may createdAt be left to it. */
const TIMED_ID = /^[0-9A-HJKMNP-TV-Z]{10}/;
const STORE_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
/** A dense item's first 23 characters: its head and id. */
const DENSE_HEAD = /^[0-9A-V][-0-9A-Z_a-z]{22}/;
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** 64 characters in ASCII order: a dense id sorts like the id. */
const D64 = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
/** Character code -> value in each alphabet (a sync decodes 100,000 ids a pass: no searching). */
const B32_VALUE = codeTable(B32);
const D64_VALUE = codeTable(D64);

function codeTable(alphabet: string): Int8Array {
  const table = new Int8Array(128);
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
}

/** 10 bits -> their 2 base32 characters; 12 bits -> their 2 dense characters. */
const B32_PAIRS = Array.from({ length: 1024 }, (_, n) => B32.charAt(n >>> 5) + B32.charAt(n & 31));
const D64_PAIRS = Array.from({ length: 4096 }, (_, n) => D64.charAt(n >>> 6) + D64.charAt(n & 63));

/** 30 bits of `id` from character `at` on (6 base32 characters). */
function b32Group(id: string, at: number): number {
  return (
    (B32_VALUE[id.charCodeAt(at) & 127]! << 25) |
    (B32_VALUE[id.charCodeAt(at + 1) & 127]! << 20) |
    (B32_VALUE[id.charCodeAt(at + 2) & 127]! << 15) |
    (B32_VALUE[id.charCodeAt(at + 3) & 127]! << 10) |
    (B32_VALUE[id.charCodeAt(at + 4) & 127]! << 5) |
    B32_VALUE[id.charCodeAt(at + 5) & 127]!
  );
}

/** 30 bits of `dense` from character `at` on (5 dense characters). */
function d64Group(dense: string, at: number): number {
  return (
    (D64_VALUE[dense.charCodeAt(at) & 127]! << 24) |
    (D64_VALUE[dense.charCodeAt(at + 1) & 127]! << 18) |
    (D64_VALUE[dense.charCodeAt(at + 2) & 127]! << 12) |
    (D64_VALUE[dense.charCodeAt(at + 3) & 127]! << 6) |
    D64_VALUE[dense.charCodeAt(at + 4) & 127]!
  );
}

function denseGroup(n: number): string {
  return D64_PAIRS[n >>> 18]! + D64_PAIRS[(n >>> 6) & 4095]! + D64.charAt(n & 63);
}

function sparseGroup(n: number): string {
  return B32_PAIRS[n >>> 20]! + B32_PAIRS[(n >>> 10) & 1023]! + B32_PAIRS[n & 1023]!;
}

/** A 26-character id (130 bits) as 22 characters: four groups of 6 base32 = 5 dense (30 bits), then 2 = 2 (2 bits spare). */
export function denseId(id: string): string {
  const last = ((B32_VALUE[id.charCodeAt(24) & 127]! << 5) | B32_VALUE[id.charCodeAt(25) & 127]!) << 2;
  return denseGroup(b32Group(id, 0)) + denseGroup(b32Group(id, 6)) + denseGroup(b32Group(id, 12)) + denseGroup(b32Group(id, 18)) + D64_PAIRS[last]!;
}

/** The id a dense id stands for (see {@link denseId}). */
export function sparseId(dense: string): string {
  return sparseAt(dense, 0, d64Group(dense, 0), d64Group(dense, 5));
}

/**
 * The id of the dense id at `at` in `text`, given its first two groups: a reader decodes those
 * once, for the id and for the time it encodes (see {@link denseTime}).
 */
function sparseAt(text: string, at: number, first: number, second: number): string {
  const last = ((D64_VALUE[text.charCodeAt(at + 20) & 127]! << 6) | D64_VALUE[text.charCodeAt(at + 21) & 127]!) >>> 2;
  return sparseGroup(first) + sparseGroup(second) + sparseGroup(d64Group(text, at + 10)) + sparseGroup(d64Group(text, at + 15)) + B32_PAIRS[last]!;
}

/** The time an id encodes (its first 10 base32 characters, 50 bits), from its dense form's first two groups: as idTime gives. */
function denseTime(first: number, second: number): number {
  return first * 1_048_576 + (second >>> 10);
}

/** The compact tail's fields. */
interface Tail {
  c?: number;
  h?: string;
  k?: string;
  m?: JsonObject;
  s?: MessageStatus;
  t?: number;
  u?: number;
}

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
  let flags = op.v === undefined ? 0 : 1;
  let tail = '';
  if (op.createdAt !== idTime(op.id) || !TIMED_ID.test(op.id)) tail += `,"c":${op.createdAt}`;
  if (op.thread !== MAIN_THREAD) tail += `,"h":"${op.thread}"`;
  if (op.key !== undefined) tail += `,"k":${JSON.stringify(op.key)}`;
  if (op.meta !== undefined) tail += `,"m":${JSON.stringify(op.meta)}`;
  if (op.status !== undefined) tail += `,"s":"${op.status}"`;
  if (op.tokens !== undefined) {
    if (op.tokens === defaultTokens(op)) flags |= 4;
    else tail += `,"t":${op.tokens}`;
  }
  if (op.updatedAt !== undefined) tail += `,"u":${op.updatedAt}`;
  if (tail !== '') flags |= 2;
  const rest = `${op.v ?? ''}${tail === '' ? '' : `{${tail.slice(1)}}\n`}${op.content}`;
  if (STORE_ID.test(op.id)) return `${HEADS.charAt(ROLE_INDEX[op.role] * 8 + flags)}${denseId(op.id)}${rest}`;
  return `${ROLE_CHAR[op.role]}${op.id}${flags}${rest}`;
}

/** Whether `text` is a message in the compact form (not JSON). */
function isCompact(text: string): boolean {
  return text.charCodeAt(0) !== 123; // '{'
}

/** A compact message's parts. */
function parseCompact(text: string): { id: string; time: number; role: Role; flags: number; v: string | undefined; tail: Tail; content: string } {
  const head = HEADS.indexOf(text.charAt(0));
  const dense = head >= 0;
  const role = dense ? INDEX_ROLE[head >> 3] : CHAR_ROLE[text.charAt(0)];
  const flags = dense ? head & 7 : text.charCodeAt(27) - 48;
  // Text the store did not write (a journal may hold anything someone pushed) must not read as a message.
  if (role === undefined || !(flags >= 0 && flags <= 7) || (dense ? !DENSE_HEAD.test(text) : text.length < 28)) {
    throw new StoreError(ErrorCode.UNREADABLE_ENTRY, 'not a message the store wrote');
  }
  let id: string;
  let time: number;
  if (dense) {
    const first = d64Group(text, 1);
    const second = d64Group(text, 6);
    id = sparseAt(text, 1, first, second);
    time = denseTime(first, second);
  } else {
    id = text.slice(1, 27);
    time = idTime(id);
  }
  let at = dense ? 23 : 28;
  let v: string | undefined;
  if (flags & 1) {
    v = text.slice(at, at + 26);
    at += 26;
  }
  let tail: Tail = {};
  if (flags & 2) {
    const end = text.indexOf('\n', at);
    tail = JSON.parse(text.slice(at, end)) as Tail;
    at = end + 1;
  }
  return { id, time, role, flags, v, tail, content: text.slice(at) };
}

/** A stored item as a Message; `thread` names the list it was read from when the item does not say (0.1's items, compact items of 'main'). */
export function decodeMessage(text: string, thread = MAIN_THREAD): Message {
  if (isCompact(text)) {
    const { id, time, role, tail, content } = parseCompact(text);
    const message: Message = {
      id,
      role,
      content,
      createdAt: new Date(tail.c ?? time),
      thread: tail.h ?? thread,
      tokens: tail.t ?? defaultTokens({ content }),
    };
    if (tail.m !== undefined) message.meta = tail.m;
    if (tail.s !== undefined) message.status = tail.s;
    if (tail.u !== undefined) message.updatedAt = new Date(tail.u);
    return message;
  }
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
  if (!isCompact(text)) return appendOf(user, JSON.parse(text) as StoredMessage, thread);
  const { id, time, role, flags, v, tail, content } = parseCompact(text);
  const op: AppendOp = { kind: 'append', user, id, thread: tail.h ?? thread, role, content, createdAt: tail.c ?? time };
  if (tail.m !== undefined) op.meta = tail.m;
  if (tail.k !== undefined) op.key = tail.k;
  if (tail.s !== undefined) op.status = tail.s;
  if (tail.u !== undefined) op.updatedAt = tail.u;
  if (tail.t !== undefined) op.tokens = tail.t;
  else if (flags & 4) op.tokens = defaultTokens({ content });
  if (v !== undefined) op.v = v;
  return op;
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

/** A journal entry: an append is its message (compact); other ops are JSON carrying their kind and value. */
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
  if (isCompact(text)) return decodeStored(user, text);
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
