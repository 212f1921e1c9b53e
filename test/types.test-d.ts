import { describe, expectTypeOf, it } from 'vitest';
import { TieredStore, type Context, type Health, type Message, type Role, type SummarizeHook, type SyncResult } from '../src/index.js';

const store = new TieredStore({ logger: false });

describe('the public API types', () => {
  it('accepts only the four roles', () => {
    expectTypeOf(store.addMemory).parameter(1).toEqualTypeOf<Role>();
    // @ts-expect-error 'admin' is not a role
    void store.addMemory(1, 'admin', 'x');
  });

  it('rejects wrong argument types at compile time', () => {
    // @ts-expect-error content must be a string
    void store.addMemory(1, 'user', 42);
    // @ts-expect-error a user id is a number or a string
    void store.getHistory({ id: 1 });
    // @ts-expect-error limit is a number
    void store.getHistory(1, { limit: '10' });
    // @ts-expect-error booking data is a JSON object
    void store.setBookingData(1, 'haircut');
    // @ts-expect-error a phone is a string
    void store.setUserPhone(1, 79991234567);
    // @ts-expect-error writeMode has two values
    void new TieredStore({ writeMode: 'sometimes' });
  });

  it('returns the contract shapes', () => {
    expectTypeOf(store.addMemory(1, 'user', 'x')).resolves.toEqualTypeOf<Message>();
    expectTypeOf(store.getHistory(1)).resolves.toEqualTypeOf<Message[]>();
    expectTypeOf(store.getUserPhone(1)).resolves.toEqualTypeOf<string | null>();
    expectTypeOf(store.getEmailSubscribers()).resolves.toEqualTypeOf<string[]>();
    expectTypeOf(store.isEmailSubscriber('a')).resolves.toEqualTypeOf<boolean>();
    expectTypeOf(store.syncNow()).resolves.toEqualTypeOf<SyncResult>();
    expectTypeOf(store.health()).toEqualTypeOf<Health>();
    expectTypeOf(store.startSync).returns.toEqualTypeOf<void>();
    expectTypeOf<Message['createdAt']>().toEqualTypeOf<Date>();
  });

  it('types the events', () => {
    store.on('tierDown', (event) => expectTypeOf(event.tier).toEqualTypeOf<string>());
    store.on('syncComplete', (result) => expectTypeOf(result).toEqualTypeOf<SyncResult>());
    // @ts-expect-error no such event
    store.on('tierSideways', () => {});
  });
});

describe('rolling summaries', () => {
  it('types getContext, summarizeNow and the summarize hook', () => {
    expectTypeOf(store.getContext(1, { maxTokens: 100 })).resolves.toEqualTypeOf<Context>();
    expectTypeOf<Context>().toEqualTypeOf<{ summary: string | null; messages: Message[]; tokens: number }>();
    expectTypeOf(store.summarizeNow(1)).resolves.toEqualTypeOf<string | null>();
    // @ts-expect-error maxTokens is required
    void store.getContext(1, {});
    const hook: SummarizeHook = async ({ userId, thread, summary, messages, signal }) =>
      `${userId}${thread}${summary ?? ''}${messages.length}${signal.aborted}`;
    void new TieredStore({ summarize: hook, summarizeAfterTokens: 4000, summarizeTimeoutMs: 60_000 });
    // @ts-expect-error a summary is a string
    void new TieredStore({ summarize: async () => 42 });
  });
});
