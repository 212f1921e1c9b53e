import { describe, expect, it } from 'vitest';
import { isMiss, type AdapterConfig, type CacheMiss, type StorageAdapter } from './adapter.js';
import type { CacheAdapter } from './cache-adapter.js';
import { createIdGenerator } from './ids.js';
import { Secrets, silentLogger } from './logger.js';
import type { AppendOp, Op } from './ops.js';

export interface ContractTarget {
  adapter: StorageAdapter;
  /** Removes what the suite wrote and closes the adapter. */
  cleanup?: () => Promise<void>;
}

export interface ContractOptions {
  /** The role the adapter is bound in: `durable` (system of record) or `cache` (Redis in front of PostgreSQL). @default 'durable' */
  role?: 'cache' | 'durable';
  historyLimit?: number;
}


/**
 * The adapter contract as a vitest suite: run it against your own adapter to check it keeps the
 * rules the store relies on (idempotent, order-independent ops; floors; last writer wins; a cache
 * never serves an incomplete copy). `make` is called once per test and gets a fresh adapter.
 */
export function runAdapterContract(name: string, make: () => Promise<ContractTarget>, options: ContractOptions = {}): void {
  const role = options.role ?? 'durable';
  const historyLimit = options.historyLimit ?? 5;
  const config: AdapterConfig = {
    role,
    historyLimit,
    ttlMs: { history: 60_000, userData: 60_000, subscribers: 60_000 },
    logger: silentLogger,
    secrets: new Secrets(),
  };
  const id = createIdGenerator();
  let n = 0;
  const user = () => `contract_${process.pid}_${Date.now()}_${n++}`;
  const append = (u: string, content: string, opId = id()): AppendOp => ({ kind: 'append', user: u, id: opId, role: 'user', content, createdAt: Date.now() });

  const withAdapter = (test: (adapter: StorageAdapter) => Promise<void>) => async () => {
    const target = await make();
    target.adapter.bind(config);
    await target.adapter.connect();
    try {
      await test(target.adapter);
    } finally {
      await target.cleanup?.();
    }
  };

  /** Reads as the store does: on a cache miss, fill from `source` ops first. */
  const history = async (adapter: StorageAdapter, u: string, limit = historyLimit) => {
    const read = await adapter.readHistory(u, limit);
    if (isMiss(read)) throw new Error('expected a hit');
    return read.messages.map((m) => m.content);
  };

  describe(`${name} keeps the adapter contract (${role})`, () => {
    it('pings and is not unavailable on an ordinary error', withAdapter(async (adapter) => {
      await adapter.ping();
      expect(adapter.isUnavailable(new Error('some other failure'))).toBe(false);
    }));

    if (role === 'durable') {
      it('returns the newest messages oldest first, limited', withAdapter(async (adapter) => {
        const u = user();
        await adapter.write([append(u, 'a'), append(u, 'b')]);
        await adapter.write([append(u, 'c')]);
        expect(await history(adapter, u)).toEqual(['a', 'b', 'c']);
        expect(await history(adapter, u, 2)).toEqual(['b', 'c']);
      }));

      it('orders by id, not by arrival, and stores a replayed op once', withAdapter(async (adapter) => {
        const u = user();
        const [first, second, third] = [append(u, '1'), append(u, '2'), append(u, '3')];
        await adapter.write([third]);
        await adapter.write([first, third]);
        await adapter.write([second, first]);
        expect(await history(adapter, u)).toEqual(['1', '2', '3']);
      }));

      it('keeps users apart', withAdapter(async (adapter) => {
        const [a, b] = [user(), user()];
        await adapter.write([append(a, 'for a'), { kind: 'phone', user: a, id: id(), phone: '+10000000001' }]);
        expect(await history(adapter, b)).toEqual([]);
        expect((await adapter.readUser(b)) as unknown).toMatchObject({ phone: { value: null }, booking: { value: null } });
      }));

      it('clears below a floor that replays of older appends cannot cross', withAdapter(async (adapter) => {
        const u = user();
        const old = append(u, 'old');
        const clear: Op = { kind: 'clear', user: u, id: id() };
        const fresh = append(u, 'fresh');
        await adapter.write([old, clear, fresh]);
        await adapter.write([old]);
        expect(await history(adapter, u)).toEqual(['fresh']);
        const read = await adapter.readHistory(u, 10);
        expect(isMiss(read) ? '' : read.floor).toBe(clear.id);
      }));

      it('lets the newest write of a field win whatever the arrival order', withAdapter(async (adapter) => {
        const u = user();
        const older: Op = { kind: 'phone', user: u, id: id(), phone: '+10000000001' };
        const newer: Op = { kind: 'phone', user: u, id: id(), phone: '+10000000002' };
        await adapter.write([newer]);
        await adapter.write([older]);
        const booking: Op = { kind: 'booking', user: u, id: id(), booking: { service: 'haircut', at: [1, 2] } };
        await adapter.write([booking]);
        const record = await adapter.readUser(u);
        expect(record).toMatchObject({ phone: { value: '+10000000002', id: newer.id }, booking: { value: { service: 'haircut', at: [1, 2] } } });
        await adapter.write([{ kind: 'phone', user: u, id: id(), phone: null }]);
        expect(await adapter.readUser(u)).toMatchObject({ phone: { value: null } });
      }));

      it('tracks subscribers', withAdapter(async (adapter) => {
        const [a, b] = [user(), user()];
        await adapter.write([{ kind: 'subscribe', user: a, id: id(), subscribed: true }, { kind: 'subscribe', user: b, id: id(), subscribed: true }]);
        await adapter.write([{ kind: 'subscribe', user: b, id: id(), subscribed: false }]);
        expect(await adapter.isSubscriber(a)).toBe(true);
        expect(await adapter.isSubscriber(b)).toBe(false);
        const all = (await adapter.readSubscribers()) as string[];
        expect(all).toContain(a);
        expect(all).not.toContain(b);
      }));

      it('erases a user for good: older replays do not bring anything back', withAdapter(async (adapter) => {
        const u = user();
        const before: Op[] = [
          append(u, 'secret'),
          { kind: 'phone', user: u, id: id(), phone: '+10000000001' },
          { kind: 'booking', user: u, id: id(), booking: { service: 'x' } },
          { kind: 'subscribe', user: u, id: id(), subscribed: true },
        ];
        await adapter.write(before);
        await adapter.write([{ kind: 'delete', user: u, id: id() }]);
        await adapter.write(before);
        expect(await history(adapter, u)).toEqual([]);
        expect(await adapter.readUser(u)).toMatchObject({ phone: { value: null }, booking: { value: null } });
        expect(await adapter.isSubscriber(u)).toBe(false);
        await adapter.write([append(u, 'after')]);
        expect(await history(adapter, u)).toEqual(['after']);
      }));
    }

    if (role === 'cache') {
      it('answers a miss for what it does not hold, and a write does not create a partial copy', withAdapter(async (adapter) => {
        const u = user();
        expect(isMiss(await adapter.readHistory(u, 5))).toBe(true);
        await adapter.write([append(u, 'only this one')]);
        expect(isMiss(await adapter.readHistory(u, 5))).toBe(true);
        expect(isMiss(await adapter.readUser(u))).toBe(true);
      }));

      it('installs a fill made after a miss, then keeps it current and trimmed', withAdapter(async (adapter) => {
        const cache = adapter as CacheAdapter;
        const u = user();
        const miss = (await adapter.readHistory(u, 5)) as CacheMiss;
        const messages = ['a', 'b'].map((c) => ({ id: id(), role: 'user' as const, content: c, createdAt: new Date() }));
        expect(await cache.fillHistory(u, miss.version, messages)).toBe(true);
        for (const c of ['c', 'd', 'e', 'f']) await adapter.write([append(u, c)]);
        expect(await history(adapter, u)).toEqual(['b', 'c', 'd', 'e', 'f']);
      }));

      it('refuses a fill when a write came after the miss', withAdapter(async (adapter) => {
        const cache = adapter as CacheAdapter;
        const u = user();
        const miss = (await adapter.readHistory(u, 5)) as CacheMiss;
        await adapter.write([append(u, 'newer than the fill')]);
        expect(await cache.fillHistory(u, miss.version, [{ id: id(), role: 'user' as const, content: 'stale', createdAt: new Date() }])).toBe(false);
        expect(isMiss(await adapter.readHistory(u, 5))).toBe(true);
        const userMiss = (await adapter.readUser(u)) as CacheMiss;
        await adapter.write([{ kind: 'phone', user: u, id: id(), phone: '+10000000003' }]);
        expect(await cache.fillUser(u, userMiss.version, { phone: { value: null, id: '' }, booking: { value: null, id: '' }, subscribed: { value: false, id: '' } })).toBe(false);
        const subsMiss = await adapter.readSubscribers();
        if (isMiss(subsMiss)) {
          await adapter.write([{ kind: 'subscribe', user: u, id: id(), subscribed: true }]);
          expect(await cache.fillSubscribers(subsMiss.version, [])).toBe(false);
        }
      }));
    }
  });
}
