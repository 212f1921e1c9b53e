import { expect } from 'vitest';
import { isMiss, type DeadLetterRecord, type StorageAdapter, type UserRecord } from '../adapters/contract.js';
import { ErrorCode, StoreError } from '../errors.js';
import type { Op } from '../model/ops.js';
import { defaultTokens } from '../model/budget.js';
import type { ContractContext } from './context.js';
import { conversationTests } from './conversations.js';

/** A durable tier never misses: its read, or a failed test. */
async function contents(adapter: StorageAdapter, user: string, limit: number): Promise<string[]> {
  const read = await adapter.readHistory(user, limit);
  if (isMiss(read)) throw new Error(`${adapter.name} answered a miss in the durable role`);
  return read.messages.map((m) => m.content);
}

async function record(adapter: StorageAdapter, user: string): Promise<UserRecord> {
  const read = await adapter.readUser(user);
  if (isMiss(read)) throw new Error(`${adapter.name} answered a miss in the durable role`);
  return read;
}

const EMPTY: UserRecord = { phone: { value: null, id: '' }, booking: { value: null, id: '' }, subscribed: { value: false, id: '' } };

/**
 * The `durable` group: every `StorageAdapter` method, the adapter bound as the system of record.
 * Ops are idempotent and commute (replays, any order), floors hold, the newest write of a field
 * wins, an erased user stays erased, and the lifecycle methods keep their promises.
 */
export function durableTests(c: ContractContext): void {
  const w = <A extends StorageAdapter>(test: (adapter: A) => Promise<void>) => c.withAdapter<A>(test, 'durable');
  const limit = c.historyLimit;

  c.it(
    'belongs to one store: a second bind throws ADAPTER_IN_USE',
    w(async (adapter) => {
      let thrown: unknown;
      try {
        adapter.bind(c.configFor('durable'));
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(StoreError);
      expect(thrown).toMatchObject({ code: ErrorCode.ADAPTER_IN_USE });
    }),
  );

  c.it(
    'pings, and does not call an ordinary error unavailable',
    w(async (adapter) => {
      await expect(adapter.ping()).resolves.toBeUndefined();
      expect(adapter.isUnavailable(new Error('some other failure'))).toBe(false);
      expect(adapter.isUnavailable(new StoreError(ErrorCode.INVALID_CONTENT, 'refused'))).toBe(false);
      expect(adapter.isUnavailable(undefined)).toBe(false);
      expect(typeof adapter.name).toBe('string');
      expect(adapter.timeoutMs).toBeGreaterThanOrEqual(0);
    }),
  );

  c.it(
    'returns the newest messages oldest first, limited',
    w(async (adapter) => {
      const u = c.user();
      await adapter.write([c.append(u, 'a'), c.append(u, 'b')]);
      await adapter.write([c.append(u, 'c')]);
      expect(await contents(adapter, u, limit)).toEqual(['a', 'b', 'c']);
      expect(await contents(adapter, u, 2)).toEqual(['b', 'c']);
      expect(await contents(adapter, u, 1)).toEqual(['c']);
      expect(await contents(adapter, c.user(), limit)).toEqual([]);
    }),
  );

  c.it(
    'keeps every field of a message: id, role, content, meta, createdAt',
    w(async (adapter) => {
      const u = c.user();
      const createdAt = Date.UTC(2024, 1, 29, 12, 30, 45, 678);
      const plain: Op = { kind: 'append', user: u, id: c.id(), thread: 'main', role: 'assistant', content: 'Привет, "мир" \\ 🌍\n', createdAt };
      const withMeta: Op = {
        kind: 'append',
        user: u,
        id: c.id(),
        thread: 'main',
        role: 'tool',
        content: '',
        createdAt: createdAt + 1,
        meta: { tool: 'search', n: 2, ok: true, list: [1, null, 'x'] },
      };
      // Text that means something inside an array literal (a batch may carry its columns as one).
      const literal: Op = { kind: 'append', user: u, id: c.id(), thread: 'main', role: 'user', content: 'NULL', createdAt: createdAt + 2, tokens: 1 };
      const braces: Op = { kind: 'append', user: u, id: c.id(), thread: 'main', role: 'user', content: '{a,"b"}\\', createdAt: createdAt + 3, tokens: 2 };
      await adapter.write([plain, withMeta, literal, braces]);
      const read = await adapter.readHistory(u, limit);
      if (isMiss(read)) throw new Error('a durable tier answered a miss');
      expect(read.messages).toEqual([
        // An append without a count (as 0.1 wrote them) reads with the default formula's.
        { id: plain.id, role: 'assistant', content: 'Привет, "мир" \\ 🌍\n', createdAt: new Date(createdAt), thread: 'main', tokens: defaultTokens(plain) },
        {
          id: withMeta.id,
          role: 'tool',
          content: '',
          createdAt: new Date(createdAt + 1),
          meta: { tool: 'search', n: 2, ok: true, list: [1, null, 'x'] },
          thread: 'main',
          tokens: 4,
        },
        { id: literal.id, role: 'user', content: 'NULL', createdAt: new Date(createdAt + 2), thread: 'main', tokens: 1 },
        { id: braces.id, role: 'user', content: '{a,"b"}\\', createdAt: new Date(createdAt + 3), thread: 'main', tokens: 2 },
      ]);
      expect(read.floor).toBe('');
    }),
  );

  c.it(
    'orders by id, not by arrival, and stores a replayed op once',
    w(async (adapter) => {
      const u = c.user();
      const [first, second, third] = [c.append(u, '1'), c.append(u, '2'), c.append(u, '3')];
      await adapter.write([third]);
      await adapter.write([first, third]);
      await adapter.write([second, first]);
      expect(await contents(adapter, u, limit)).toEqual(['1', '2', '3']);
    }),
  );

  c.it(
    'resolves nothing or one outcome per op, a string only for a repeated idempotency key',
    w(async (adapter) => {
      const u = c.user();
      const alone = [c.append(u, 'alone')];
      const batch: Op[] = [
        c.append(u, 'x'),
        { kind: 'phone', user: u, id: c.id(), phone: '+10000000001' },
        { kind: 'subscribe', user: u, id: c.id(), subscribed: true },
      ];
      for (const ops of [alone, batch, [c.append(u, 'alone again')]]) {
        const outcomes = await adapter.write(ops);
        if (outcomes === undefined) continue;
        expect(outcomes).toHaveLength(ops.length);
        for (const outcome of outcomes) expect(typeof outcome).toBe('boolean');
      }
      expect(await adapter.write([])).toSatisfy((outcomes: unknown) => outcomes === undefined || (Array.isArray(outcomes) && outcomes.length === 0));
      expect(await contents(adapter, u, limit)).toEqual(['alone', 'x', 'alone again']);
    }),
  );

  if (c.options.idempotencyKeys !== false) {
    c.it(
      'stores a message once per idempotency key and names the first message',
      w(async (adapter) => {
        const [u, other] = [c.user(), c.user()];
        const first = { ...c.append(u, 'hello'), key: 'update-1' };
        const stored = await adapter.write([first]);
        if (stored !== undefined) expect(stored).toEqual([expect.any(Boolean)]);
        const repeat = { ...c.append(u, 'hello, re-delivered'), key: 'update-1' };
        const outcomes = await adapter.write([repeat]);
        if (outcomes !== undefined) expect(outcomes).toEqual([first.id]);
        // The first op itself, replayed (a journal moved twice), is no repeat.
        const replayed = await adapter.write([first]);
        if (replayed !== undefined) expect(replayed).toEqual([expect.any(Boolean)]);
        await adapter.write([{ ...c.append(other, 'same key, other user'), key: 'update-1' }]);
        expect(await contents(adapter, u, limit)).toEqual(['hello']);
        expect(await contents(adapter, other, limit)).toEqual(['same key, other user']);
      }),
    );

    c.it(
      'forgets an idempotency key once a clear or delete removed its message: a re-delivery after it is stored again',
      w(async (adapter) => {
        for (const kind of ['clear', 'delete'] as const) {
          const u = c.user();
          const first = { ...c.append(u, 'before'), key: 'update-3' };
          await adapter.write([first]);
          await adapter.write([kind === 'clear' ? { kind, user: u, id: c.id(), thread: 'main' } : { kind, user: u, id: c.id() }]);
          const again = { ...c.append(u, 'after'), key: 'update-3' };
          const outcomes = await adapter.write([again]);
          if (outcomes !== undefined) expect(outcomes).toEqual([expect.any(Boolean)]);
          expect(await contents(adapter, u, limit)).toEqual(['after']);
        }
      }),
    );

    c.it(
      'keeps the first of two appends with one idempotency key in a batch',
      w(async (adapter) => {
        const u = c.user();
        const first = { ...c.append(u, 'first'), key: 'update-2' };
        const second = { ...c.append(u, 'second'), key: 'update-2' };
        const outcomes = await adapter.write([first, c.append(u, 'between'), second]);
        if (outcomes !== undefined) expect(outcomes[2]).toBe(first.id);
        expect(await contents(adapter, u, limit)).toEqual(['first', 'between']);
      }),
    );
  }

  c.it(
    'keeps users apart',
    w(async (adapter) => {
      const [a, b] = [c.user(), c.user()];
      await adapter.write([
        c.append(a, 'for a'),
        { kind: 'phone', user: a, id: c.id(), phone: '+10000000001' },
        { kind: 'subscribe', user: a, id: c.id(), subscribed: true },
      ]);
      expect(await contents(adapter, b, limit)).toEqual([]);
      expect((await record(adapter, b)).phone.value).toBeNull();
      expect(await adapter.isSubscriber(b)).toBe(false);
      expect((await record(adapter, a)).phone.value).toBe('+10000000001');
    }),
  );

  c.it(
    'reads an unknown user as nulls and false',
    w(async (adapter) => {
      const u = c.user();
      expect(await record(adapter, u)).toEqual(EMPTY);
      expect(await adapter.isSubscriber(u)).toBe(false);
      expect(await adapter.readHistory(u, limit)).toEqual({ messages: [], floor: '' });
    }),
  );

  c.it(
    'clears below a floor that replays of older appends cannot cross',
    w(async (adapter) => {
      const u = c.user();
      const old = c.append(u, 'old');
      const clear: Op = { kind: 'clear', user: u, id: c.id(), thread: 'main' };
      const fresh = c.append(u, 'fresh');
      await adapter.write([old, clear, fresh]);
      await adapter.write([old]);
      expect(await contents(adapter, u, limit)).toEqual(['fresh']);
      const read = await adapter.readHistory(u, 10);
      expect(isMiss(read) ? 'miss' : read.floor).toBe(clear.id);
      // An older clear arriving late does not lower the floor.
      await adapter.write([{ kind: 'clear', user: u, id: old.id, thread: 'main' }]);
      const again = await adapter.readHistory(u, 10);
      expect(isMiss(again) ? 'miss' : again.floor).toBe(clear.id);
      expect(await contents(adapter, u, limit)).toEqual(['fresh']);
    }),
  );

  c.it(
    'lets the newest write of a field win whatever the arrival order',
    w(async (adapter) => {
      const u = c.user();
      const older: Op = { kind: 'phone', user: u, id: c.id(), phone: '+10000000001' };
      const newer: Op = { kind: 'phone', user: u, id: c.id(), phone: '+10000000002' };
      await adapter.write([newer]);
      await adapter.write([older]);
      const booking: Op = { kind: 'booking', user: u, id: c.id(), booking: { service: 'haircut', at: [1, 2], note: null } };
      await adapter.write([booking]);
      expect(await record(adapter, u)).toMatchObject({
        phone: { value: '+10000000002', id: newer.id },
        booking: { value: { service: 'haircut', at: [1, 2], note: null }, id: booking.id },
      });
      const cleared: Op = { kind: 'phone', user: u, id: c.id(), phone: null };
      await adapter.write([cleared, { kind: 'booking', user: u, id: c.id(), booking: null }]);
      await adapter.write([newer]);
      expect(await record(adapter, u)).toMatchObject({ phone: { value: null }, booking: { value: null } });
    }),
  );

  c.it(
    'tracks subscribers, the newest subscription winning',
    w(async (adapter) => {
      const [a, b, late] = [c.user(), c.user(), c.user()];
      await adapter.write([
        { kind: 'subscribe', user: a, id: c.id(), subscribed: true },
        { kind: 'subscribe', user: b, id: c.id(), subscribed: true },
      ]);
      await adapter.write([{ kind: 'subscribe', user: b, id: c.id(), subscribed: false }]);
      const olderUnsubscribe: Op = { kind: 'subscribe', user: late, id: c.id(), subscribed: false };
      await adapter.write([{ kind: 'subscribe', user: late, id: c.id(), subscribed: true }]);
      await adapter.write([olderUnsubscribe]);
      expect(await adapter.isSubscriber(a)).toBe(true);
      expect(await adapter.isSubscriber(b)).toBe(false);
      expect(await adapter.isSubscriber(late)).toBe(true);
      expect((await record(adapter, late)).subscribed.value).toBe(true);
      const all = await adapter.readSubscribers();
      if (isMiss(all)) throw new Error('a durable tier answered a miss');
      expect(all).toEqual(expect.arrayContaining([a, late]));
      expect(all).not.toContain(b);
      expect(new Set(all).size).toBe(all.length);
    }),
  );

  c.it(
    'erases a user for good: older replays do not bring anything back',
    w(async (adapter) => {
      const u = c.user();
      const before: Op[] = [
        c.append(u, 'secret'),
        { kind: 'phone', user: u, id: c.id(), phone: '+10000000001' },
        { kind: 'booking', user: u, id: c.id(), booking: { service: 'x' } },
        { kind: 'subscribe', user: u, id: c.id(), subscribed: true },
      ];
      await adapter.write(before);
      await adapter.write([{ kind: 'delete', user: u, id: c.id() }]);
      await adapter.write(before);
      expect(await contents(adapter, u, limit)).toEqual([]);
      expect(await record(adapter, u)).toMatchObject({ phone: { value: null }, booking: { value: null }, subscribed: { value: false } });
      expect(await adapter.isSubscriber(u)).toBe(false);
      expect(await adapter.readSubscribers()).not.toContain(u);
      await adapter.write([c.append(u, 'after'), { kind: 'phone', user: u, id: c.id(), phone: '+10000000009' }]);
      expect(await contents(adapter, u, limit)).toEqual(['after']);
      expect((await record(adapter, u)).phone.value).toBe('+10000000009');
    }),
  );

  c.it(
    'serves again after reset and connect, with nothing lost',
    w(async (adapter) => {
      const u = c.user();
      await adapter.write([c.append(u, 'kept')]);
      await adapter.reset();
      await adapter.connect();
      await expect
        .poll(
          () =>
            adapter.ping().then(
              () => 'up',
              () => 'down',
            ),
          { timeout: 5_000 },
        )
        .toBe('up');
      expect(await contents(adapter, u, limit)).toEqual(['kept']);
    }),
  );

  c.it(
    'closes idempotently',
    w(async (adapter) => {
      await expect(adapter.close()).resolves.toBeUndefined();
      await expect(adapter.close()).resolves.toBeUndefined();
      await expect(Promise.all([adapter.close(), adapter.close()])).resolves.toEqual([undefined, undefined]);
    }),
  );

  c.it(
    'describes its target without the secrets it declares',
    c.withAdapter(async (adapter, test) => {
      if (!adapter.describe && !adapter.secrets) test.skip('the adapter has neither describe() nor secrets()');
      const secrets = adapter.secrets?.() ?? [];
      expect(secrets.every((s) => typeof s === 'string' && s.length > 0)).toBe(true);
      if (adapter.describe) {
        const text = adapter.describe();
        expect(text).toMatch(/\S/);
        for (const secret of secrets) {
          const password = URL.canParse(secret) ? new URL(secret).password : '';
          if (password) expect(text).not.toContain(decodeURIComponent(password));
        }
      }
    }, 'durable'),
  );

  c.it(
    'enforces retention: the newest keepLast per thread, and nothing created before a date, for good',
    c.withAdapter(async (adapter, test) => {
      if (!adapter.enforceRetention) return test.skip('the adapter has no enforceRetention()');
      const [a, b, untouched] = [c.user(), c.user(), c.user()];
      const [a1, ...rest] = ['a1', 'a2', 'a3', 'a4'].map((t) => c.append(a, t));
      await adapter.write([a1!, ...rest]);
      await adapter.write(['b1', 'b2'].map((t) => c.append(b, t)));
      await adapter.write(['u1', 'u2', 'u3'].map((t) => c.append(untouched, t)));
      expect(await adapter.enforceRetention({ users: [a, b], keepLast: 2, batch: 1 })).toBe(2);
      expect(await contents(adapter, a, 10)).toEqual(['a3', 'a4']);
      expect(await contents(adapter, b, 10)).toEqual(['b1', 'b2']);
      expect(await contents(adapter, untouched, 10)).toEqual(['u1', 'u2', 'u3']);
      // Ids are time-ordered: the old messages are written first (created long ago), then a new one.
      const d = c.user();
      const older = { ...c.append(d, 'older still'), createdAt: Date.UTC(2000, 0, 1) };
      const old = { ...c.append(d, 'ancient'), createdAt: Date.UTC(2001, 0, 1) };
      await adapter.write([old, older, c.append(d, 'd1')]);
      expect(await adapter.enforceRetention({ users: [], before: new Date(Date.UTC(2010, 0, 1)), batch: 1 })).toBe(2);
      expect(await contents(adapter, d, 10)).toEqual(['d1']);
      expect(await contents(adapter, b, 10)).toEqual(['b1', 'b2']);
      expect(await contents(adapter, untouched, 10)).toEqual(['u1', 'u2', 'u3']);
      // A journal replayed after retention (a sync pass that crashed before its ack) brings nothing back.
      await adapter.write([a1!, old]);
      expect(await contents(adapter, a, 10)).toEqual(['a3', 'a4']);
      expect(await contents(adapter, d, 10)).toEqual(['d1']);
    }, 'durable'),
  );

  c.it(
    'records a dead letter',
    c.withAdapter(async (adapter, test) => {
      if (!adapter.recordDeadLetter) return test.skip('the adapter has no recordDeadLetter()');
      const u = c.user();
      const op = c.append(u, 'refused "for good" ✗');
      const letters: DeadLetterRecord[] = [
        { user: u, kind: 'append', id: op.id, entry: JSON.stringify(op), error: 'check constraint "no_poison" violated' },
        { user: u, kind: 'unreadable', id: '', entry: '{not json', error: 'Unexpected token n' },
      ];
      for (const letter of letters) await expect(adapter.recordDeadLetter!(letter)).resolves.toBeUndefined();
      if (c.options.deadLetters)
        expect(await c.options.deadLetters(adapter, u)).toEqual(expect.arrayContaining(letters.map((l) => expect.objectContaining(l))));
    }, 'durable'),
  );

  conversationTests(c);
}
