import { afterAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Issue item 4: a write-through write that PostgreSQL took but whose Redis part failed (the
// writer's Redis connection hung, timed out, was replaced) is acknowledged. Another process, which
// reaches Redis fine, reads Redis's old copy of that user until the writer reaches Redis again and
// drops it (docs/failure-behaviour.md): as soon as it does, never at the copy's TTL.
const names = isolation('write_not_reaching_redis');
const proxies: FaultProxy[] = [];
const stores: TieredStore[] = [];
afterAll(async () => {
  for (const p of proxies) await p.pass().catch(() => {});
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(proxies.map((p) => p.close()));
  await cleanupRedis(redisUrl(), names.keyPrefix).catch(() => {});
  await cleanupPostgres(databaseUrl(), names.schema);
});

function store(redis: string): TieredStore {
  const s = new TieredStore({
    logger: false,
    probeIntervalMs: 100,
    redis: new RedisAdapter({ url: redis, keyPrefix: names.keyPrefix, timeoutMs: 300 }),
    postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
  });
  stores.push(s);
  return s;
}

describe('a write acknowledged while the writer could not reach Redis', () => {
  it.each([
    ['deleteUser', (b: TieredStore, u: string) => b.deleteUser(u), (a: TieredStore, u: string) => a.getHistory(u), []],
    ['clearHistory', (b: TieredStore, u: string) => b.clearHistory(u), (a: TieredStore, u: string) => a.getHistory(u), []],
    ['setUserPhone', (b: TieredStore, u: string) => b.setUserPhone(u, '+79990000002'), (a: TieredStore, u: string) => a.getUserPhone(u), '+79990000002'],
  ] as const)('%s: another process reading Redis sees it as soon as the writer reaches Redis again', async (kind, write, read, expected) => {
    const proxy = await FaultProxy.start(redisUrl());
    proxies.push(proxy);
    const a = store(redisUrl());
    const b = store(proxy.url(redisUrl()));
    const user = `nr_${kind}`;
    await b.addMemory(user, 'user', 'secret');
    await b.setUserPhone(user, '+79990000001');
    await a.getHistory(user);
    await a.getUserPhone(user); // A's process filled the hot copies
    await proxy.hang();
    await write(b, user); // acknowledged: PostgreSQL has it
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await proxy.pass();
    const found = async () => JSON.stringify(await read(a, user));
    // The writer probes every 100 ms here; its first probe that gets through drops the copy.
    await expect.poll(found, { timeout: 1500, interval: 50 }).toBe(JSON.stringify(expected));
  });
});
