import { expect } from 'vitest';
import type { CacheAdapter } from '../cache/contract.js';
import type { Op } from '../model/ops.js';
import { expectMiss } from './cache.js';
import type { ContractContext } from './context.js';

/** How many users `pendingUsers` is asked for: more than any test leaves pending. */
const ALL = 1000;

/**
 * The `journal` group: with `{ pending: true }` each op is journaled atomically with its write and
 * counted in the pending index; the syncer's side (`pendingUsers`, `readJournals`, `ack`,
 * `pendingCount`, `indexJournals`) sees exactly what is pending and no ack can drop an entry it
 * did not read; a delete takes older entries with it; the sync lease has one holder at a time.
 */
export function journalTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;
  const phone = (user: string, value: string | null = '+10000000001'): Op => ({ kind: 'phone', user, id: c.id(), phone: value });
  const subscribe = (user: string, subscribed = true): Op => ({ kind: 'subscribe', user, id: c.id(), subscribed });
  const entries = async (cache: CacheAdapter, user: string, perUser = 0) => (await cache.readJournals([user], perUser)).get(user) ?? [];
  /** Acknowledges everything `user` has journaled; resolves what the ack says is left. */
  const drain = async (cache: CacheAdapter, user: string) =>
    cache.ack(
      user,
      (await entries(cache, user)).map((e) => e.raw),
    );

  c.it(
    'journals pending writes oldest first and counts each in the pending index',
    w(async (cache) => {
      const [a, b, nobody] = [c.user(), c.user(), c.user()];
      const before = await cache.pendingCount();
      const first: Op[] = [c.append(a, 'one'), phone(a), c.append(b, 'for b')];
      expect(await cache.write(first, { pending: true })).toEqual([false, false, false]);
      const second = subscribe(a);
      expect(await cache.write([second], { pending: true })).toEqual([false]);
      const ofA = [first[0], first[1], second];
      expect(await cache.readPending(a)).toEqual(ofA);
      expect(await cache.readPending(b)).toEqual([first[2]]);
      expect(await cache.readPending(nobody)).toEqual([]);
      expect(await cache.pendingCount()).toBe(before + 4);
      expect(await cache.pendingUsers(ALL)).toEqual(expect.arrayContaining([a, b]));
      expect(await cache.pendingUsers(1)).toHaveLength(1);
      const journals = await cache.readJournals([a, b, nobody], 0);
      expect(journals.get(a)?.map((e) => e.op)).toEqual(ofA);
      expect(journals.get(a)?.every((e) => typeof e.raw === 'string' && e.raw.length > 0 && e.error === undefined)).toBe(true);
      expect(journals.get(b)?.map((e) => e.op)).toEqual([first[2]]);
      expect(journals.get(nobody) ?? []).toEqual([]);
      expect((await entries(cache, a, 2)).map((e) => e.op)).toEqual(ofA.slice(0, 2));
      expect(await drain(cache, a)).toBe(0);
      expect(await drain(cache, b)).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
    }),
  );

  c.it(
    'ack removes head entries and uncounts them; the user leaves the index when none are left',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      const ops = [c.append(u, '1'), phone(u), c.append(u, '3')];
      for (const op of ops) await cache.write([op], { pending: true });
      const [e0, e1, e2] = await entries(cache, u);
      expect(await cache.ack(u, [e0!.raw, e1!.raw])).toBe(1);
      expect(await cache.readPending(u)).toEqual([ops[2]]);
      expect(await cache.pendingCount()).toBe(before + 1);
      expect(await cache.pendingUsers(ALL)).toContain(u);
      expect(await cache.ack(u, [e2!.raw])).toBe(0);
      expect(await cache.readPending(u)).toEqual([]);
      expect(await cache.pendingCount()).toBe(before);
      expect(await cache.pendingUsers(ALL)).not.toContain(u);
      // Acknowledged twice (two syncers): nothing more goes, nothing is uncounted twice.
      expect(await cache.ack(u, [e0!.raw, e1!.raw, e2!.raw])).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
    }),
  );

  c.it(
    'ack leaves entries written after the read, and any entry not at the head',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      const [read1, read2, later] = [c.append(u, 'read 1'), c.append(u, 'read 2'), c.append(u, 'written after the read')];
      await cache.write([read1, read2], { pending: true });
      const [e0, e1] = await entries(cache, u);
      await cache.write([later], { pending: true });
      expect(await cache.ack(u, [e1!.raw])).toBe(3);
      expect(await cache.readPending(u)).toEqual([read1, read2, later]);
      expect(await cache.pendingCount()).toBe(before + 3);
      expect(await cache.ack(u, [e0!.raw, e1!.raw])).toBe(1);
      expect(await cache.readPending(u)).toEqual([later]);
      expect(await cache.pendingCount()).toBe(before + 1);
      expect(await cache.pendingUsers(ALL)).toContain(u);
      // A second syncer acknowledging the same read later must not take the newer entry.
      expect(await cache.ack(u, [e0!.raw, e1!.raw])).toBe(1);
      expect(await cache.readPending(u)).toEqual([later]);
      expect(await cache.pendingCount()).toBe(before + 1);
      expect(await drain(cache, u)).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
    }),
  );

  c.it(
    'ack of a long read: whole when it is the head, only what is still at the head when another syncer took part of it',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      const ops = Array.from({ length: 7 }, (_, i) => c.append(u, `message ${i}`));
      await cache.write(ops.slice(0, 6), { pending: true });
      const read = (await entries(cache, u)).map((e) => e.raw);
      await cache.write([ops[6] as Op], { pending: true });
      // Another syncer acknowledged the first two meanwhile: the ends no longer match the head.
      expect(await cache.ack(u, read.slice(0, 2))).toBe(5);
      expect(await cache.ack(u, read.slice(0, 4))).toBe(3);
      expect(await cache.readPending(u)).toEqual(ops.slice(4));
      expect(await cache.pendingCount()).toBe(before + 3);
      // The rest of the read is the head: it goes in one step, the later write stays.
      expect(await cache.ack(u, read.slice(4))).toBe(1);
      expect(await cache.readPending(u)).toEqual([ops[6]]);
      // A stale read takes nothing; one whose first entry is the head but whose last is not takes the head only.
      expect(await cache.ack(u, [...read.slice(0, 2), 'not an entry'])).toBe(1);
      expect(await cache.ack(u, [(await entries(cache, u))[0]!.raw, 'not an entry', 'nor this'])).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
    }),
  );

  c.it(
    'ackMany acknowledges each user like ack: the head goes, a stale read takes only what is still the head, an empty read recounts',
    w(async (cache) => {
      if (!cache.ackMany) return;
      const [whole, moved, later, none] = [c.user(), c.user(), c.user(), c.user()];
      const before = await cache.pendingCount();
      const ofMoved = Array.from({ length: 4 }, (_, i) => c.append(moved, `moved ${i}`));
      await cache.write([c.append(whole, 'w1'), phone(whole), c.append(whole, 'w3'), ...ofMoved, c.append(later, 'l1')], { pending: true });
      const journals = await cache.readJournals([whole, moved, later, none], 0);
      const raw = (user: string) => (journals.get(user) ?? []).map((e) => e.raw);
      const newer = c.append(later, 'written after the read');
      await cache.write([newer], { pending: true });
      // Another syncer acknowledged the first of `moved` meanwhile: its read's ends are no longer the head.
      expect(await cache.ack(moved, raw(moved).slice(0, 1))).toBe(3);
      const acks = new Map([whole, moved, later, none].map((user) => [user, raw(user)]));
      const left = new Map([whole, moved, later, none].map((user) => [user, user === later ? 1 : 0]));
      expect(await cache.ackMany(acks)).toEqual(left);
      expect(await cache.readPending(whole)).toEqual([]);
      expect(await cache.readPending(moved)).toEqual([]);
      expect(await cache.readPending(later)).toEqual([newer]);
      expect(await cache.pendingCount()).toBe(before + 1);
      expect(await cache.pendingUsers(ALL)).toContain(later);
      expect(await cache.pendingUsers(ALL)).not.toContain(whole);
      // Acknowledged again (a second syncer): nothing more goes, nothing is uncounted twice.
      expect(await cache.ackMany(acks)).toEqual(left);
      expect(await cache.pendingCount()).toBe(before + 1);
      expect(await drain(cache, later)).toBe(0);
    }),
  );

  c.it(
    'a delete drops the journal entries older than it, and their count',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      await cache.write([c.append(u, 'old'), phone(u), subscribe(u)], { pending: true });
      const deleteId = c.id();
      const newer = c.append(u, 'newer than the delete, journaled before it');
      await cache.write([newer], { pending: true });
      expect(await cache.pendingCount()).toBe(before + 4);
      const erase: Op = { kind: 'delete', user: u, id: deleteId };
      await cache.write([erase], { pending: true });
      expect(await cache.readPending(u)).toEqual([newer, erase]);
      expect(await cache.pendingCount()).toBe(before + 2);
      expect(await drain(cache, u)).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
      expect(await cache.pendingUsers(ALL)).not.toContain(u);
    }),
  );

  if (c.options.idempotencyKeys !== false) {
    c.it(
      'does not journal a write that repeats an idempotency key, and names the first message',
      w(async (cache) => {
        const u = c.user();
        const before = await cache.pendingCount();
        const first = { ...c.append(u, 'hello'), key: 'update-1' };
        expect(await cache.write([first], { pending: true })).toEqual([false]);
        expect(await cache.write([{ ...c.append(u, 'hello, re-delivered'), key: 'update-1' }], { pending: true })).toEqual([first.id]);
        expect(await cache.readPending(u)).toEqual([first]);
        expect(await cache.pendingCount()).toBe(before + 1);
        expect(await drain(cache, u)).toBe(0);
      }),
    );
  }

  c.it(
    'a miss carries the ops journaled for that user',
    w(async (cache) => {
      const u = c.user();
      const ops = [c.append(u, 'pending'), phone(u), subscribe(u)];
      await cache.write(ops, { pending: true });
      await cache.invalidate([u], true);
      expect(expectMiss(await cache.readHistory(u, limit), 'history').pending).toEqual(ops);
      expect(expectMiss(await cache.readUser(u), 'user').pending).toEqual(ops);
      expect(expectMiss(await cache.isSubscriber(u), 'subscription').pending).toContainEqual(ops[2]);
      expect(expectMiss(await cache.readSubscribers(), 'subscribers').pending).toContainEqual(ops[2]);
      expect(await drain(cache, u)).toBe(0);
      expect(expectMiss(await cache.readHistory(u, limit), 'history after the ack').pending).toEqual([]);
    }),
  );

  c.it(
    'invalidate and invalidateAll keep the journals and their count',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      const ops = [c.append(u, 'pending'), subscribe(u)];
      await cache.write(ops, { pending: true });
      await cache.invalidate([u], true);
      expect(await cache.readPending(u)).toEqual(ops);
      await cache.invalidateAll();
      expect(await cache.readPending(u)).toEqual(ops);
      expect(await cache.pendingCount()).toBe(before + 2);
      expect(await cache.pendingUsers(ALL)).toContain(u);
      expect(await drain(cache, u)).toBe(0);
    }),
  );

  c.it(
    'indexJournals finds nothing to index when the index points to every journal',
    w(async (cache) => {
      const u = c.user();
      const before = await cache.pendingCount();
      await cache.write([c.append(u, 'pending'), phone(u)], { pending: true });
      expect(await cache.indexJournals()).toBe(0);
      expect(await cache.pendingCount()).toBe(before + 2);
      expect(await drain(cache, u)).toBe(0);
      expect(await cache.indexJournals()).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
    }),
  );

  c.it(
    'indexJournals finds a journal the pending index lost',
    c.withAdapter<CacheAdapter>(async (cache, test) => {
      const dropFromIndex = c.options.dropFromIndex;
      if (!dropFromIndex) return test.skip('no dropFromIndex option');
      const u = c.user();
      const before = await cache.pendingCount();
      const ops = [c.append(u, 'pending'), phone(u)];
      await cache.write(ops, { pending: true });
      await dropFromIndex(cache, u);
      expect(await cache.pendingUsers(ALL)).not.toContain(u);
      expect(await cache.pendingCount()).toBe(before);
      expect(await cache.indexJournals()).toBe(1);
      expect(await cache.pendingUsers(ALL)).toContain(u);
      expect(await cache.pendingCount()).toBe(before + 2);
      expect(await cache.indexJournals()).toBe(0);
      expect(await cache.readPending(u)).toEqual(ops);
      expect(await drain(cache, u)).toBe(0);
      expect(await cache.pendingCount()).toBe(before);
      expect(await cache.pendingUsers(ALL)).not.toContain(u);
    }, 'cache'),
  );

  c.it(
    'hands the sync lease to one token at a time, until released or expired',
    w(async (cache) => {
      const [a, b] = [`lease-a-${c.id()}`, `lease-b-${c.id()}`];
      expect(await cache.acquireLease(a, 10_000)).toBe(true);
      expect(await cache.acquireLease(b, 10_000)).toBe(false);
      expect(await cache.acquireLease(a, 10_000)).toBe(true);
      await cache.releaseLease(b);
      expect(await cache.acquireLease(b, 10_000)).toBe(false);
      await cache.releaseLease(a);
      expect(await cache.acquireLease(b, 200)).toBe(true);
      expect(await cache.acquireLease(a, 10_000)).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(await cache.acquireLease(a, 10_000)).toBe(true);
      await cache.releaseLease(a);
    }),
  );
}
