import { afterEach, describe, expect, it } from 'vitest';
import { OutageRig } from './helpers/outage.js';

let rig: OutageRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

describe('store.stats()', () => {
  it('counts hits, misses, fallbacks and errors per tier, and latency per method', async () => {
    // Redis's own counts: without L1, which would serve the repeated reads from process memory.
    rig = await OutageRig.start({ historyLimit: 10, l1: false });
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

  it('counts L1 hits, misses, bytes, entries, invalidations by another process and evictions past maxBytes', async () => {
    rig = await OutageRig.start({ historyLimit: 10, l1: { maxBytes: 4000 } });
    const { store } = rig;
    const other = rig.anotherProcess({ l1: false });
    try {
      await store.addMemory('l1', 'user', 'a');
      // The first read fills L1 (its refill of Redis may invalidate it once); then reads are hits.
      await expect.poll(async () => (await store.getHistory('l1')).length > 0 && store.stats().l1.hits, { timeout: 10_000 }).toBeGreaterThan(0);
      let l1 = store.stats().l1;
      expect(l1).toMatchObject({ enabled: true, entries: 1, staleServes: 0, evictions: 0 });
      expect(l1.misses).toBeGreaterThan(0);
      expect(l1.bytes).toBeGreaterThan(256);
      await other.addMemory('l1', 'user', 'b');
      await expect.poll(() => store.stats().l1.invalidations, { timeout: 10_000 }).toBeGreaterThan(0);
      for (let i = 0; i < 20; i++) {
        await other.addMemory(`e${i}`, 'user', 'x'.repeat(100));
        await store.getHistory(`e${i}`);
      }
      l1 = store.stats().l1;
      expect(l1.evictions).toBeGreaterThan(0);
      expect(l1.bytes).toBeLessThanOrEqual(4000);
      expect(l1.entries).toBeLessThan(21);
    } finally {
      await other.close();
    }
  });
  // A memory-only store's empty picture: test/memory-store.test.ts.
});
