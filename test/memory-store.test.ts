import { describe, expect, it } from 'vitest';
import { MemoryAdapter, TieredStore } from '../src/index.js';

// The store on RAM alone: what a bot gets with no server configured (no server needed here).
describe('a memory-only store', () => {
  it('round-trips every method', async () => {
    const store = new TieredStore({ logger: false, historyLimit: 3 });
    const written = [];
    for (const text of ['1', '2', '3', '4']) written.push(await store.addMemory(123, 'user', text));
    expect((await store.getHistory('123')).map((m) => m.content)).toEqual(['2', '3', '4']);
    expect((await store.getHistory(123, { limit: 10 })).map((m) => m.id)).toEqual(written.map((m) => m.id));
    expect(await store.setUserPhone(123, '+7 (999) 123-45-67')).toBe('+79991234567');
    expect(await store.getUserPhone(123)).toBe('+79991234567');
    await store.setBookingData(123, { service: 'haircut' });
    expect(await store.getBookingData(123)).toEqual({ service: 'haircut' });
    await store.addEmailSubscriber(123);
    expect(await store.getEmailSubscribers()).toEqual(['123']);
    await store.clearHistory(123);
    expect(await store.getHistory(123)).toEqual([]);
    await store.deleteUser(123);
    expect(await store.getUserPhone(123)).toBeNull();
    expect(await store.getEmailSubscribers()).toEqual([]);
    expect(store.health()).toMatchObject({ redis: 'absent', postgres: 'absent', memory: 'up' });
    await store.close();
  });

  it('reports an empty stats picture', async () => {
    const store = new TieredStore({ logger: false });
    await store.addMemory(1, 'user', 'x');
    expect(store.stats()).toMatchObject({ pending: 0, syncLagMs: null, oldestPendingAgeMs: null, tiers: { redis: { hits: 0 } } });
    await store.close();
  });

  it('close() makes later calls fail with STORE_CLOSED and is idempotent', async () => {
    const store = new TieredStore({ logger: false });
    await store.addMemory(1, 'user', 'x');
    await Promise.all([store.close(), store.close()]);
    await expect(store.addMemory(1, 'user', 'y')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.getHistory(1)).rejects.toMatchObject({ code: 'STORE_CLOSED' });
  });

  it('keeps data for the life of the process and refuses writes past its bound', async () => {
    const store = new TieredStore({ logger: false, memory: new MemoryAdapter({ maxMessages: 3 }) });
    for (const text of ['1', '2', '3']) await store.addMemory('u', 'user', text);
    await expect(store.addMemory('u', 'user', '4')).rejects.toMatchObject({ code: 'STORE_FULL' });
    expect((await store.getHistory('u')).map((m) => m.content)).toEqual(['1', '2', '3']);
    await store.close();
  });
});

describe('rolling summaries in RAM', () => {
  it('concurrent summarizeNow calls of one thread run one at a time in the process', async () => {
    let active = 0;
    let most = 0;
    const store = new TieredStore({
      logger: false,
      summarizeAfterTokens: 1_000_000,
      summarize: async ({ summary, messages }) => {
        most = Math.max(most, ++active);
        await new Promise((resolve) => setTimeout(resolve, 30));
        active--;
        return [summary, ...messages.map((m) => m.content)].filter(Boolean).join('|');
      },
    });
    await store.addMemory('u', 'user', 'a');
    const results = await Promise.all([store.summarizeNow('u'), store.summarizeNow('u'), store.summarizeNow('u')]);
    expect(most).toBe(1);
    expect(results).toEqual(['a', 'a', 'a']);
    await store.addMemory('u', 'user', 'b');
    expect(await store.summarizeNow('u')).toBe('a|b');
    expect(await store.getContext('u', { maxTokens: 100 })).toMatchObject({ summary: 'a|b', messages: [] });
    await store.close();
  });
});
