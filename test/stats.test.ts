import { afterEach, describe, expect, it } from 'vitest';
import { OutageRig } from './helpers/outage.js';

let rig: OutageRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

describe('store.stats()', () => {
  it('counts hits, misses, fallbacks and errors per tier, and latency per method', async () => {
    rig = await OutageRig.start({ historyLimit: 10 });
    const { store } = rig;
    await store.addMemory('s1', 'user', 'a');
    await store.getHistory('s1'); // miss, then refilled
    await store.getHistory('s1'); // hit
    await store.getHistory('s1'); // hit
    let stats = store.stats();
    expect(stats.tiers.redis).toMatchObject({ hits: 2, misses: 1, errors: 0, fallbacks: 0 });
    expect(stats.operations.getHistory).toMatchObject({ count: 3, errors: 0 });
    expect(stats.operations.getHistory!.p50Ms).toBeGreaterThan(0);
    expect(stats.operations.getHistory!.p99Ms).toBeGreaterThanOrEqual(stats.operations.getHistory!.p50Ms);
    expect(stats.operations.addMemory).toMatchObject({ count: 1 });
    expect(stats).toMatchObject({ pending: 0, oldestPendingAgeMs: null, deadLetters: 0 });

    await rig.redis.refuse();
    await store.getHistory('s1');
    await store.getHistory('s1');
    stats = store.stats();
    expect(stats.tiers.redis.errors).toBeGreaterThanOrEqual(1);
    expect(stats.tiers.redis.fallbacks).toBeGreaterThanOrEqual(2);

    await rig.redis.pass();
    await rig.pg.refuse();
    await store.addMemory('s1', 'user', 'held');
    await new Promise((resolve) => setTimeout(resolve, 30));
    stats = store.stats();
    expect(stats.tiers.postgres.errors).toBeGreaterThanOrEqual(1);
    expect(stats.tiers.postgres.fallbacks).toBeGreaterThanOrEqual(1);
    expect(stats.pending).toBeGreaterThanOrEqual(1);
    expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(25);
    await rig.pg.pass();
    await rig.recovered();
    stats = store.stats();
    expect(stats.pending).toBe(0);
    expect(stats.syncLagMs).toBeGreaterThanOrEqual(0);
  });
  // A memory-only store's empty picture: test/memory-store.test.ts.
});
