import { afterAll, describe, expect, it } from 'vitest';
import type { TieredStore } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, redisUrl } from './helpers/services.js';
import { isolation, makeStore, TOPOLOGIES } from './helpers/stores.js';

// Issue 15: where the in-process tier runs. It needs Redis (its invalidation feed): on in every
// layout with Redis, off without; two stores on the same servers stay coherent in each.

const names = isolation('l1_layouts');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const texts = async (store: TieredStore, user: string) => (await store.getHistory(user)).map((m) => m.content);

describe.each(TOPOLOGIES)('%s', (topology) => {
  const withRedis = topology !== 'memory only' && topology !== 'postgres only';

  it(withRedis ? 'runs L1, and a write through one store is in the other store next read' : 'runs no L1 (no Redis to keep it coherent)', async () => {
    const one = makeStore(topology, names);
    // Memory only has nothing to share: one store reads its own writes.
    const two = topology === 'memory only' ? one : makeStore(topology, names);
    const user = `lay_${topology.replace(/\W/g, '_')}`;
    try {
      await one.addMemory(user, 'user', 'a');
      for (let i = 0; i < 3; i++) expect(await texts(two, user)).toEqual(['a']);
      if (withRedis) {
        // Wait until two serves from L1, so the write below can only reach it through invalidation.
        await expect
          .poll(
            async () => {
              const hits = two.stats().l1.hits;
              await two.getHistory(user);
              return two.stats().l1.hits > hits;
            },
            { timeout: 10_000 },
          )
          .toBe(true);
        await one.addMemory(user, 'user', 'b');
        expect(await texts(two, user)).toEqual(['a', 'b']);
        expect(two.stats().l1).toMatchObject({ enabled: true });
        expect(two.stats().l1.hits).toBeGreaterThan(0);
      } else {
        expect(two.stats().l1).toEqual({ enabled: false, hits: 0, misses: 0, evictions: 0, bytes: 0, entries: 0, invalidations: 0, staleServes: 0 });
      }
    } finally {
      await one.close();
      if (two !== one) await two.close();
    }
  });

  if (withRedis) {
    it('a write acknowledged by one store is in the next read of the other, every time (its invalidation arrives first)', async () => {
      // Both in one process: nothing between the acknowledgement and the read gives a late
      // invalidation time to arrive, so this fails whenever Redis answers the writer before the feed.
      const [one, two] = [makeStore(topology, names), makeStore(topology, names)];
      const user = `order_${topology.replace(/\W/g, '_')}`;
      const written: string[] = [];
      try {
        for (let i = 0; i < 40; i++) {
          const [writer, reader] = i % 2 === 0 ? [one, two] : [two, one];
          for (let r = 0; r < 2; r++) await texts(reader, user); // the second read is from L1: the reader holds a copy
          written.push(`m${i}`);
          await writer.addMemory(user, 'user', `m${i}`);
          expect(await texts(reader, user), `round ${i}`).toEqual(written.slice(-50));
        }
        expect(one.stats().l1.hits + two.stats().l1.hits).toBeGreaterThan(20);
      } finally {
        await one.close();
        await two.close();
      }
    });

    it('l1: false runs none', async () => {
      const store = makeStore(topology, names, { l1: false });
      const user = `off_${topology.replace(/\W/g, '_')}`;
      try {
        await store.addMemory(user, 'user', 'a');
        for (let i = 0; i < 3; i++) expect(await texts(store, user)).toEqual(['a']);
        expect(store.stats().l1).toMatchObject({ enabled: false, hits: 0 });
      } finally {
        await store.close();
      }
    });
  }
});
