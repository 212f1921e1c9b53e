import { expect } from 'vitest';
import { isMiss, type CacheMiss, type UserRecord } from '../adapters/contract.js';
import { CACHE_METHODS, type CacheAdapter } from '../cache/contract.js';
import type { Message } from '../types.js';
import type { ContractContext } from './context.js';
import { conversationCacheTests } from './conversations.js';

/** The miss `value` must be, or a failed test. */
export function expectMiss(value: unknown, what: string): CacheMiss {
  if (!isMiss(value)) throw new Error(`expected a miss for ${what}, got ${JSON.stringify(value)}`);
  expect(typeof value.version).toBe('string');
  expect(Array.isArray(value.pending)).toBe(true);
  return value;
}

/** The hit `value` must be, or a failed test. */
export function expectHit<T>(value: T | CacheMiss, what: string): T {
  if (isMiss(value)) throw new Error(`expected a hit for ${what}, got a miss`);
  return value;
}

/**
 * The `cache` group: a cache answers a miss for what it does not hold; a write never creates a
 * copy (it moves the version instead); a copy is created whole, by a fill at the version the miss
 * saw, and is refused once a write moved it; invalidation drops copies and fails fills in flight;
 * a history copy is kept current and trimmed to `historyLimit`.
 */
export function cacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;
  const message = (content: string, id = c.id()): Message => ({
    id,
    role: 'user',
    content,
    createdAt: new Date(Date.UTC(2024, 0, 1)),
    tokens: 5,
    thread: 'main',
  });
  const texts = async (cache: CacheAdapter, user: string, n = limit) =>
    expectHit(await cache.readHistory(user, n), `history of ${user}`).messages.map((m) => m.content);
  const record = (phone: string | null, booking: UserRecord['booking']['value'] = null, ids = { phone: '', booking: '' }): UserRecord => ({
    phone: { value: phone, id: phone === null ? '' : ids.phone || c.id() },
    booking: { value: booking, id: booking === null ? '' : ids.booking || c.id() },
    subscribed: { value: false, id: '' },
  });
  /** Fills a user's history and user data after their misses (each fill must be installed). */
  const fillBoth = async (cache: CacheAdapter, u: string) => {
    expect(await cache.fillHistory(u, expectMiss(await cache.readHistory(u, limit), 'history').version, [message(`for ${u}`)])).toBe(true);
    expect(await cache.fillUser(u, expectMiss(await cache.readUser(u), 'user').version, record('+10000000001'))).toBe(true);
  };

  c.it(
    'implements every method of the cache role',
    c.withAdapter(async (adapter) => {
      const missing = CACHE_METHODS.filter((method) => typeof (adapter as unknown as Record<string, unknown>)[method] !== 'function');
      expect(missing).toEqual([]);
    }, 'cache'),
  );

  c.it(
    'answers a miss for what it does not hold, carrying a version and no pending ops',
    w(async (cache) => {
      const u = c.user();
      await cache.invalidate([u], true);
      expect(expectMiss(await cache.readHistory(u, limit), 'history').pending).toEqual([]);
      expect(expectMiss(await cache.readUser(u), 'user').pending).toEqual([]);
      expectMiss(await cache.isSubscriber(u), 'subscription');
      expectMiss(await cache.readSubscribers(), 'subscribers');
    }),
  );

  c.it(
    'never creates a copy from a write: the write resolves false, moves the version, and reads still miss',
    w(async (cache) => {
      const u = c.user();
      await cache.invalidate([], true);
      const before = expectMiss(await cache.readHistory(u, limit), 'history').version;
      expect(await cache.write([c.append(u, 'only this one')])).toEqual([false]);
      const after = expectMiss(await cache.readHistory(u, limit), 'history after a write').version;
      expect(after).not.toBe(before);
      expect(await cache.write([{ kind: 'phone', user: u, id: c.id(), phone: '+10000000001' }])).toEqual([false]);
      expectMiss(await cache.readUser(u), 'user after a write');
      const subscribers = expectMiss(await cache.readSubscribers(), 'subscribers').version;
      expect(await cache.write([{ kind: 'subscribe', user: u, id: c.id(), subscribed: true }])).toEqual([false]);
      expect(expectMiss(await cache.readSubscribers(), 'subscribers after a write').version).not.toBe(subscribers);
      expectMiss(await cache.isSubscriber(u), 'subscription after a write');
      expectMiss(await cache.readHistory(u, limit), 'history at the end');
    }),
  );

  c.it(
    'installs a history fill made at the miss version, then keeps it current, ordered and trimmed to historyLimit',
    w(async (cache) => {
      const u = c.user();
      const miss = expectMiss(await cache.readHistory(u, limit), 'history');
      const filled = [message('a'), message('b')];
      expect(await cache.fillHistory(u, miss.version, filled)).toBe(true);
      const read = expectHit(await cache.readHistory(u, limit), 'history after a fill');
      expect(read.messages).toEqual(filled);
      const lateId = c.id();
      const outcomes = [];
      for (const text of ['c', 'd', 'e']) outcomes.push(...(await cache.write([c.append(u, text)])));
      outcomes.push(...(await cache.write([c.append(u, 'late', lateId)])));
      expect(outcomes).toEqual([true, true, true, true]);
      const all = ['a', 'b', 'late', 'c', 'd', 'e'];
      expect(await texts(cache, u, 100)).toEqual(all.slice(-limit));
      expect(await texts(cache, u, 2)).toEqual(all.slice(-2));
      await cache.write([c.append(u, 'f'), c.append(u, 'g')]);
      expect(await texts(cache, u, 100)).toEqual([...all, 'f', 'g'].slice(-limit));
    }),
  );

  c.it(
    'installs user and subscriber fills made at the miss version, and keeps them current',
    w(async (cache) => {
      const [u, a, b, later] = [c.user(), c.user(), c.user(), c.user()];
      const oldPhone = c.id();
      const userMiss = expectMiss(await cache.readUser(u), 'user');
      expect(await cache.fillUser(u, userMiss.version, record('+10000000001', { service: 'x' }))).toBe(true);
      expect(expectHit(await cache.readUser(u), 'user after a fill')).toMatchObject({ phone: { value: '+10000000001' }, booking: { value: { service: 'x' } } });
      expect(await cache.write([{ kind: 'phone', user: u, id: c.id(), phone: '+10000000002' }])).toEqual([true]);
      await cache.write([{ kind: 'phone', user: u, id: oldPhone, phone: '+10000000000' }]);
      expect(expectHit(await cache.readUser(u), 'user after writes')).toMatchObject({ phone: { value: '+10000000002' }, booking: { value: { service: 'x' } } });

      await cache.invalidate([], true);
      const subsMiss = expectMiss(await cache.readSubscribers(), 'subscribers');
      expect(await cache.fillSubscribers(subsMiss.version, [a, b])).toBe(true);
      expect([...expectHit(await cache.readSubscribers(), 'subscribers after a fill')].sort()).toEqual([a, b].sort());
      expect(await cache.isSubscriber(a)).toBe(true);
      expect(await cache.isSubscriber(later)).toBe(false);
      expect(
        await cache.write([
          { kind: 'subscribe', user: later, id: c.id(), subscribed: true },
          { kind: 'subscribe', user: a, id: c.id(), subscribed: false },
        ]),
      ).toEqual([true, true]);
      expect([...expectHit(await cache.readSubscribers(), 'subscribers after writes')].sort()).toEqual([b, later].sort());
      expect(await cache.isSubscriber(a)).toBe(false);
      expect(await cache.isSubscriber(later)).toBe(true);
    }),
  );

  c.it(
    'refuses a fill at a version a write moved, and keeps answering misses',
    w(async (cache) => {
      const u = c.user();
      const miss = expectMiss(await cache.readHistory(u, limit), 'history');
      await cache.write([c.append(u, 'newer than the fill')]);
      expect(await cache.fillHistory(u, miss.version, [message('stale')])).toBe(false);
      expectMiss(await cache.readHistory(u, limit), 'history after a refused fill');
      const userMiss = expectMiss(await cache.readUser(u), 'user');
      await cache.write([{ kind: 'phone', user: u, id: c.id(), phone: '+10000000003' }]);
      expect(await cache.fillUser(u, userMiss.version, record(null))).toBe(false);
      expectMiss(await cache.readUser(u), 'user after a refused fill');
      await cache.invalidate([], true);
      const subsMiss = expectMiss(await cache.readSubscribers(), 'subscribers');
      await cache.write([{ kind: 'subscribe', user: u, id: c.id(), subscribed: true }]);
      expect(await cache.fillSubscribers(subsMiss.version, [])).toBe(false);
      expectMiss(await cache.readSubscribers(), 'subscribers after a refused fill');
    }),
  );

  c.it(
    'does not let a second fill replace a copy it holds',
    w(async (cache) => {
      const u = c.user();
      const miss = expectMiss(await cache.readHistory(u, limit), 'history');
      expect(await cache.fillHistory(u, miss.version, [message('first')])).toBe(true);
      expect(await cache.fillHistory(u, miss.version, [message('second')])).toBe(false);
      expect(await texts(cache, u)).toEqual(['first']);
      const userMiss = expectMiss(await cache.readUser(u), 'user');
      expect(await cache.fillUser(u, userMiss.version, record('+10000000001'))).toBe(true);
      expect(await cache.fillUser(u, userMiss.version, record('+10000000002'))).toBe(false);
      expect(expectHit(await cache.readUser(u), 'user').phone.value).toBe('+10000000001');
    }),
  );

  c.it(
    'invalidate drops the copies it names and fails fills in flight; other copies stay',
    w(async (cache) => {
      const [a, b, inFlight] = [c.user(), c.user(), c.user()];
      for (const u of [a, b]) await fillBoth(cache, u);
      await cache.invalidate([], true);
      expect(await cache.fillSubscribers(expectMiss(await cache.readSubscribers(), 'subscribers').version, [a])).toBe(true);
      const history = expectMiss(await cache.readHistory(inFlight, limit), 'history');
      const user = expectMiss(await cache.readUser(inFlight), 'user');

      await cache.invalidate([a, inFlight], false);
      expectMiss(await cache.readHistory(a, limit), 'history of an invalidated user');
      expectMiss(await cache.readUser(a), 'user data of an invalidated user');
      expect(await texts(cache, b)).toEqual([`for ${b}`]);
      expect(expectHit(await cache.readUser(b), 'user data of another user').phone.value).toBe('+10000000001');
      expect(await cache.readSubscribers()).toEqual([a]);
      expect(await cache.fillHistory(inFlight, history.version, [message('read before the invalidation')])).toBe(false);
      expect(await cache.fillUser(inFlight, user.version, record('+10000000002'))).toBe(false);
      expectMiss(await cache.readHistory(inFlight, limit), 'history after a refused fill');

      await cache.invalidate([], true);
      expectMiss(await cache.isSubscriber(a), 'subscription after invalidate');
      const subscribers = expectMiss(await cache.readSubscribers(), 'subscribers after invalidate').version;
      await cache.invalidate([], true);
      expect(await cache.fillSubscribers(subscribers, [a])).toBe(false);
      expectMiss(await cache.readSubscribers(), 'subscribers after a refused fill');
      expect(await texts(cache, b)).toEqual([`for ${b}`]);
    }),
  );

  c.it(
    'invalidateAll drops every copy and fails fills in flight',
    w(async (cache) => {
      const [a, b, inFlight] = [c.user(), c.user(), c.user()];
      for (const u of [a, b]) await fillBoth(cache, u);
      await cache.invalidate([], true);
      expect(await cache.fillSubscribers(expectMiss(await cache.readSubscribers(), 'subscribers').version, [a, b])).toBe(true);
      await cache.write([c.append(inFlight, 'written before the miss')]);
      const history = expectMiss(await cache.readHistory(inFlight, limit), 'history');

      await cache.invalidateAll();
      for (const u of [a, b]) {
        expectMiss(await cache.readHistory(u, limit), 'history after invalidateAll');
        expectMiss(await cache.readUser(u), 'user data after invalidateAll');
        expectMiss(await cache.isSubscriber(u), 'subscription after invalidateAll');
      }
      expectMiss(await cache.readSubscribers(), 'subscribers after invalidateAll');
      expect(await cache.fillHistory(inFlight, history.version, [message('read before invalidateAll')])).toBe(false);
    }),
  );

  c.it(
    'invalidateAll fails a fill whose miss came before any write',
    w(async (cache) => {
      const u = c.user();
      const miss = expectMiss(await cache.readHistory(u, limit), 'history');
      const userMiss = expectMiss(await cache.readUser(u), 'user');
      await cache.invalidateAll();
      expect(await cache.fillHistory(u, miss.version, [message('read before invalidateAll')])).toBe(false);
      expect(await cache.fillUser(u, userMiss.version, record('+10000000001'))).toBe(false);
      expectMiss(await cache.readHistory(u, limit), 'history after a refused fill');
    }),
  );

  c.it(
    'names the server run: a string, the same from call to call',
    w(async (cache) => {
      const runId = await cache.runId();
      expect(typeof runId).toBe('string');
      expect(await cache.runId()).toBe(runId);
    }),
  );

  c.it(
    'calls onReady listeners when its client connects again',
    w(async (cache) => {
      let calls = 0;
      expect(cache.onReady(() => calls++)).toBeUndefined();
      await cache.reset();
      await cache.connect();
      await expect.poll(() => calls, { timeout: 5_000 }).toBeGreaterThan(0);
      await expect
        .poll(
          () =>
            cache.ping().then(
              () => 'up',
              () => 'down',
            ),
          { timeout: 5_000 },
        )
        .toBe('up');
    }),
  );

  conversationCacheTests(c);
}
