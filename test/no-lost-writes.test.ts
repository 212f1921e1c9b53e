import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore, TOPOLOGIES } from './helpers/stores.js';

// Guarantees 1 and 2: concurrent appends all survive, once each, in one stable order.
const names = isolation('no_lost_writes');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
afterAll(async () => {
  await sql.end();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const WRITERS = 300;

describe.each(TOPOLOGIES)('%s', (topology) => {
  it(`${WRITERS} concurrent appends for one user from three store instances: none lost, none doubled, one order`, async () => {
    const stores = [0, 1, 2].map(() => makeStore(topology, names, { historyLimit: 1000 }));
    const single = topology === 'memory only';
    const writers = single ? [stores[0]!] : stores;
    const user = `concurrent_${topology.replace(/ /g, '_')}`;
    const written = await Promise.all(Array.from({ length: WRITERS }, (_, i) => writers[i % writers.length]!.addMemory(user, 'user', `m${i}`)));
    const ids = written.map((m) => m.id);
    expect(new Set(ids).size).toBe(WRITERS);

    const reader = stores[0]!;
    const history = await reader.getHistory(user, { limit: 1000 });
    expect(history.map((m) => m.content).sort()).toEqual(written.map((m) => m.content).sort());
    const order = history.map((m) => m.id);
    expect(order).toEqual([...order].sort());

    for (const store of stores) await store.syncNow();
    if (topology !== 'memory only' && topology !== 'redis only') {
      const rows = await sql`select id from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
      expect(rows.map((r) => r.id)).toEqual([...ids].sort());
    }
    // Another instance (memory-only stores share nothing) sees the same order.
    const other = single ? reader : stores[2]!;
    expect((await other.getHistory(user, { limit: 1000 })).map((m) => m.id)).toEqual(order);
    await Promise.all(stores.map((s) => s.close()));
  });
});

it('appending to a long history costs the same round trips as to a short one (no read-modify-write)', async () => {
  const store = makeStore('write-through', names, { historyLimit: 50 });
  const monitor = await import('ioredis').then(({ Redis }) => new Redis(redisUrl()));
  const user = 'append_cost';
  for (let i = 0; i < 300; i++) await store.addMemory(user, 'user', `m${i}`);
  await store.getHistory(user);
  const commands: string[] = [];
  const watcher = await monitor.monitor();
  watcher.on('monitor', (_time: string, args: string[]) => {
    if (args.some((a) => a.includes(`{${user}}`))) commands.push(args[0]!.toLowerCase());
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await store.addMemory(user, 'user', 'one more');
  await new Promise((resolve) => setTimeout(resolve, 50));
  watcher.disconnect();
  monitor.disconnect();
  // One script call; Redis never hands the history back to the client to be rewritten.
  expect(commands.filter((c) => c === 'evalsha' || c === 'eval')).toHaveLength(1);
  expect(commands).not.toContain('get');
  expect(commands).not.toContain('set');
  expect(commands.filter((c) => c === 'lrange')).toHaveLength(0);
  await store.close();
});
