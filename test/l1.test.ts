import { describe, expect, it } from 'vitest';
import { userOfKey } from '../src/cache/invalidation-feed.js';
import { L1, MESSAGE_OVERHEAD_BYTES, messageBytes, staleHistory } from '../src/cache/l1.js';
import type { Op } from '../src/model/ops.js';
import type { Message } from '../src/types.js';

// The in-process tier's pure logic: serving rules, fills against invalidations, byte accounting
// and LRU eviction, last-known copies. Its coherence across processes: test/l1-processes.test.ts.

let seq = 0;
const id = () => `01J${String(++seq).padStart(23, '0')}`;
const msg = (content: string, extra: Partial<Message> = {}): Message => ({
  id: id(),
  role: 'user',
  content,
  createdAt: new Date(1_700_000_000_000),
  thread: 'main',
  tokens: 5,
  ...extra,
});
const window = (n: number, text = 'x') => Array.from({ length: n }, (_, i) => msg(`${text}${i}`));
const ENTRY = 200;

function live(maxBytes = 1_000_000, historyLimit = 5): L1 {
  const l1 = new L1(maxBytes, historyLimit);
  l1.setLive(true);
  return l1;
}

describe('L1 serving', () => {
  it('hands out every field of a message, each read a new object with new dates, whatever shape it was filled with', () => {
    const l1 = live();
    const full = msg('all', { meta: { model: 'x' }, status: 'aborted', updatedAt: new Date(1_700_000_000_500) });
    const w = [msg('plain'), full, { tokens: 3, thread: 'main', createdAt: new Date(1), content: 'reordered', role: 'assistant', id: id() } as Message];
    expect(l1.fill(l1.ticket(), 'u', 'main', w)).toBe(true);
    const read = l1.history('u', 'main', 3)!;
    expect(read).toStrictEqual(w);
    for (const [i, m] of read.entries()) {
      expect(m).not.toBe(w[i]);
      expect(m.createdAt).not.toBe(w[i]!.createdAt);
    }
    expect(read[1]!.updatedAt).not.toBe(full.updatedAt);
  });

  it('serves a filled window for any limit up to historyLimit, as copies a caller may change', () => {
    const l1 = live();
    const w = window(5);
    expect(l1.fill(l1.ticket(), 'u', 'main', w)).toBe(true);
    const read = l1.history('u', 'main', 3)!;
    expect(read.map((m) => m.content)).toEqual(['x2', 'x3', 'x4']);
    read[0]!.content = 'changed';
    w[3]!.content = 'changed too';
    expect(l1.history('u', 'main', 5)!.map((m) => m.content)).toEqual(['x0', 'x1', 'x2', 'x3', 'x4']);
    expect(l1.history('u', 'main', 6)).toBeUndefined(); // beyond the window: goes down
    expect(l1.history('u', 'other', 1)).toBeUndefined();
    expect(l1.stats()).toMatchObject({ hits: 2, misses: 2, entries: 1 });
  });

  it('keeps only the newest historyLimit of a longer read', () => {
    const l1 = live();
    l1.fill(l1.ticket(), 'u', 'main', window(8));
    expect(l1.history('u', 'main', 5)!.map((m) => m.content)).toEqual(['x3', 'x4', 'x5', 'x6', 'x7']);
  });

  it('a longer read kept only as a last-known copy keeps more than historyLimit of it', () => {
    const l1 = live();
    expect(l1.fill(undefined, 'u', 'main', window(12))).toBe(false);
    expect(l1.lastKnown('u', 'main')!.messages).toHaveLength(12);
    expect(l1.history('u', 'main', 5)).toBeUndefined();
  });

  it('not live: no ticket, nothing serves, but a read is kept as the last-known copy', () => {
    const l1 = new L1(1_000_000, 5);
    expect(l1.ticket()).toBeUndefined();
    expect(l1.fill(undefined, 'u', 'main', window(2))).toBe(false);
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    expect(l1.lastKnown('u', 'main')!.messages.map((m) => m.content)).toEqual(['x0', 'x1']);
  });

  it('a fill whose user was invalidated after its ticket was taken does not serve', () => {
    const l1 = live();
    const ticket = l1.ticket();
    l1.invalidate(['u']);
    expect(l1.fill(ticket, 'u', 'main', window(2))).toBe(false);
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    expect(l1.fill(ticket, 'v', 'main', window(2))).toBe(true); // another user is not concerned
    expect(l1.fill(l1.ticket(), 'u', 'main', window(2))).toBe(true);
  });

  it('an invalidation stops serving but keeps the last-known copy; a fill that loses the race never replaces a serving one', () => {
    const l1 = live();
    const late = l1.ticket();
    l1.invalidate(['u']);
    l1.fill(l1.ticket(), 'u', 'main', window(2, 'new'));
    expect(l1.fill(late, 'u', 'main', window(2, 'old'))).toBe(false);
    expect(l1.history('u', 'main', 2)!.map((m) => m.content)).toEqual(['new0', 'new1']);
    l1.invalidate(['u']);
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    expect(l1.lastKnown('u', 'main')!.messages.map((m) => m.content)).toEqual(['new0', 'new1']);
    expect(l1.stats().invalidations).toBe(1); // only the one that stopped a serving copy
  });

  it('dropAll and setLive stop every copy and refuse every fill in flight', () => {
    const l1 = live();
    l1.fill(l1.ticket(), 'u', 'main', window(2));
    const ticket = l1.ticket();
    l1.dropAll();
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    expect(l1.fill(ticket, 'v', 'main', window(2))).toBe(false);
    l1.fill(l1.ticket(), 'u', 'main', window(2));
    l1.setLive(true);
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    l1.setLive(false);
    expect(l1.fill(l1.ticket(), 'u', 'main', window(2))).toBe(false);
  });

  it("this process's writes stop its copies serving and are remembered on them; an erasure drops them", () => {
    const l1 = live();
    l1.fill(l1.ticket(), 'u', 'main', window(2));
    const ticket = l1.ticket();
    const op: Op = { kind: 'append', user: 'u', id: id(), thread: 'main', role: 'user', content: 'mine', createdAt: 0, tokens: 1 };
    l1.wrote([op]);
    expect(l1.history('u', 'main', 2)).toBeUndefined();
    expect(l1.fill(ticket, 'u', 'main', window(2))).toBe(false); // read before the write finished
    expect(l1.lastKnown('u', 'main')!.after).toEqual([op]);
    expect(l1.stats().invalidations).toBe(0); // own writes are not counted as invalidations
    l1.wrote([{ kind: 'delete', user: 'u', id: id() }]);
    expect(l1.lastKnown('u', 'main')).toBeUndefined();
    expect(l1.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });
});

describe('L1 phone and booking', () => {
  const record = (phone: string | null, booking: Record<string, string> | null) => ({
    phone: { value: phone, id: 'a' },
    booking: { value: booking, id: 'b' },
    subscribed: { value: false, id: '' },
  });

  it('serves a filled record as a copy, by the same rules as histories, and erasure drops it', () => {
    const l1 = live();
    expect(l1.user('u')).toBeUndefined();
    expect(l1.fillUser(l1.ticket(), 'u', record('+1', { slot: 'x' }))).toBe(true);
    const read = l1.user('u')!;
    expect(read.phone.value).toBe('+1');
    read.booking.value!.slot = 'changed';
    expect(l1.user('u')!.booking.value).toEqual({ slot: 'x' });
    const ticket = l1.ticket();
    l1.invalidate(['u']);
    expect(l1.user('u')).toBeUndefined();
    expect(l1.fillUser(ticket, 'u', record('+2', null))).toBe(false);
    expect(l1.lastKnownUser('u')!.record.phone.value).toBe('+2');
    l1.fill(l1.ticket(), 'u', 'main', window(1));
    l1.wrote([{ kind: 'delete', user: 'u', id: id() }]);
    expect(l1.lastKnownUser('u')).toBeUndefined();
    expect(l1.lastKnown('u', 'main')).toBeUndefined();
  });
});

describe('L1 bytes', () => {
  it('counts a fixed cost per message plus its text (wide characters twice), and meta', () => {
    expect(messageBytes(msg('abc'))).toBe(MESSAGE_OVERHEAD_BYTES + 3);
    expect(messageBytes(msg('ж'))).toBe(MESSAGE_OVERHEAD_BYTES + 2);
    expect(messageBytes(msg('a', { meta: { k: 1 } }))).toBe(MESSAGE_OVERHEAD_BYTES + 1 + JSON.stringify({ k: 1 }).length * 3);
    const l1 = live();
    const w = window(3);
    l1.fill(l1.ticket(), 'u', 'main', w);
    expect(l1.stats().bytes).toBe(ENTRY + w.reduce((sum, m) => sum + messageBytes(m), 0));
    l1.fill(l1.ticket(), 'u', 'main', window(1));
    expect(l1.stats()).toMatchObject({ entries: 1, bytes: ENTRY + messageBytes(msg('x0')) });
  });

  it('evicts the least recently used copies past maxBytes; a read makes a copy recent', () => {
    const one = ENTRY + messageBytes(msg('x0'));
    const l1 = live(one * 3, 5);
    for (const user of ['a', 'b', 'c']) l1.fill(l1.ticket(), user, 'main', window(1));
    expect(l1.history('a', 'main', 1)).toBeDefined(); // a is now the most recent
    l1.fill(l1.ticket(), 'd', 'main', window(1));
    expect(l1.stats()).toMatchObject({ entries: 3, evictions: 1, bytes: one * 3 });
    expect(l1.lastKnown('b', 'main')).toBeUndefined();
    for (const user of ['a', 'c', 'd']) expect(l1.history(user, 'main', 1), user).toBeDefined();
  });

  it('a copy larger than maxBytes is not kept, and replaces nothing it cannot', () => {
    const l1 = live(ENTRY + MESSAGE_OVERHEAD_BYTES + 10, 5);
    expect(l1.fill(l1.ticket(), 'u', 'main', [msg('x'.repeat(100))])).toBe(false);
    expect(l1.stats()).toMatchObject({ entries: 0, bytes: 0, evictions: 0 });
  });
});

describe('stale-if-error merge', () => {
  const append = (content: string): Op => ({ kind: 'append', user: 'u', id: id(), thread: 'main', role: 'user', content, createdAt: 0, tokens: 1 });

  it('the known copy and what RAM holds, each message once, with the ops since laid over them in order', () => {
    const known = window(3, 'k');
    const out = append('out');
    const held = [{ ...known[2]! }, { id: out.id, role: 'user' as const, content: 'out', createdAt: new Date(0), thread: 'main', tokens: 1 }];
    const merged = staleHistory({ messages: known, after: [] }, held, 'u', 'main', [out, out], 10);
    expect(merged.map((m) => m.content)).toEqual(['k0', 'k1', 'k2', 'out']);
    expect(staleHistory({ messages: known, after: [] }, held, 'u', 'main', [out], 2).map((m) => m.content)).toEqual(['k2', 'out']);
  });

  it('a clear and an edit made since apply to the known messages', () => {
    const known = window(2, 'k');
    const edit: Op = { kind: 'edit', user: 'u', id: id(), thread: 'main', target: known[0]!.id, content: 'k0-edited', tokens: 1 };
    expect(staleHistory({ messages: known, after: [edit] }, [], 'u', 'main', [], 10).map((m) => m.content)).toEqual(['k0-edited', 'k1']);
    const clear: Op = { kind: 'clear', user: 'u', id: id(), thread: 'main' };
    const later = append('later');
    expect(staleHistory({ messages: known, after: [edit] }, [], 'u', 'main', [clear, later], 10).map((m) => m.content)).toEqual(['later']);
  });
});

describe('invalidation keys', () => {
  it("names the user of a user's key, and nobody for the shared keys", () => {
    expect(userOfKey('tcs:{42}:h', 'tcs:{')).toBe('42');
    expect(userOfKey('tcs:{u_1-x}:h:thread', 'tcs:{')).toBe('u_1-x');
    expect(userOfKey('tcs:{subs:3}:s', 'tcs:{')).toBeUndefined();
    // The sync lease's tag has no colon: it names a user 'sync', whose copies a sync pass then drops (harmless).
    expect(userOfKey('tcs:{sync}:lock', 'tcs:{')).toBe('sync');
    expect(userOfKey('other:{42}:h', 'tcs:{')).toBeUndefined();
    expect(userOfKey('tcs:{42', 'tcs:{')).toBeUndefined();
  });
});
