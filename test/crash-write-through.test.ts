import { afterEach, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { checkStored, CrashChild, drainedOnItsOwn, killAllChildren, leaseOf, recover } from './helpers/crash.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { MARGIN_MS } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Crash test (b): a write-through process whose PostgreSQL is cut (the proxy drops every connection
// and refuses new ones), so its writes are journaled in Redis; then it is SIGKILLed, either while
// PostgreSQL is still away or while it drains the journal after PostgreSQL came back. The next
// process to start must move what was left by itself (no syncNow, no startSync), and every write
// the killed one acknowledged must be in PostgreSQL exactly once.
const REDIS_TIMEOUT_MS = 500;
const PG_TIMEOUT_MS = 1000;
let proxy: FaultProxy | undefined;
let names = isolation('crash_wt');
afterEach(async () => {
  await killAllChildren();
  await proxy?.close();
  proxy = undefined;
  await cleanupRedis(redisUrl(), names.keyPrefix).catch(() => {});
  await cleanupPostgres(databaseUrl(), names.schema);
});

type When = 'while PostgreSQL is away' | 'while the journal drains' | 'holding the sync lease';

async function cutThenKill(when: When): Promise<void> {
  names = isolation('crash_wt');
  proxy = await FaultProxy.start(databaseUrl());
  const tag = { 'while PostgreSQL is away': 'wta', 'while the journal drains': 'wtd', 'holding the sync lease': 'wtl' }[when];
  const child = CrashChild.start({
    mode: 'stream',
    redis: { url: redisUrl() },
    databaseUrl: proxy.url(databaseUrl()),
    ...names,
    writeMode: 'write-through',
    redisTimeoutMs: REDIS_TIMEOUT_MS,
    pgTimeoutMs: PG_TIMEOUT_MS,
    writers: 8,
    users: ['wt0', 'wt1', 'wt2', 'wt3'],
    tag,
    count: 0,
    pauseMs: 4,
  });
  await child.acks(200);
  await proxy.refuse();
  await child.acks(child.acked.size + 800, 20_000);
  if (when === 'while the journal drains') {
    await proxy.pass();
    await child.waitFor((l) => /postgres is up again/.test(l), 10_000, '"postgres is up again"');
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 100));
  }
  if (when === 'holding the sync lease') {
    // Kill while the drain holds its lease: polled on Redis, the lease as the store names it today.
    const redis = new Redis(redisUrl());
    const until = Date.now() + 5000;
    await proxy.pass();
    while (Date.now() < until && (await redis.exists(`${names.keyPrefix}:{sync}:lock`)) === 0) {
      /* poll */
    }
    const held = (await redis.exists(`${names.keyPrefix}:{sync}:lock`)) === 1;
    redis.disconnect();
    expect(held, 'the drain took its lease within 5 s').toBe(true);
  }
  await child.kill();
  await proxy.pass();

  // The next process to start finds the leftovers and moves them by itself: no syncNow, no startSync.
  const next = new TieredStore({
    logger: false,
    redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
    postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
  });
  const began = performance.now();
  let left: number;
  try {
    await next.getHistory('wt0');
    left = await drainedOnItsOwn(redisUrl(), names.keyPrefix);
  } finally {
    await next.close();
  }
  const onItsOwnMs = Math.round(performance.now() - began);
  expect(left, `a new process left ${left} pending writes unmoved for 15 s (${await leaseOf(redisUrl(), names.keyPrefix)})`).toBe(0);

  const { pending, moved } = await recover({ url: redisUrl() }, databaseUrl(), names, 8000);
  const stored = await checkStored(databaseUrl(), names.schema, child.acked, tag);
  console.info(
    `write-through, killed ${when}: ${stored.acked} acknowledged, ${stored.missing.length} lost, ${stored.duplicated.length} doubled, ` +
      `drained by the next process on its own in ${onItsOwnMs} ms, pending ${pending} after ${moved.length} recovery passes (moved ${moved.reduce((a, b) => a + b, 0)}), slowest call ${child.slowest} ms`,
  );
  expect(stored.missing).toEqual([]);
  expect(stored.duplicated).toEqual([]);
  expect(pending).toBe(0);
  expect(child.failures).toEqual([]);
  expect(child.slowest).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
}

it('PostgreSQL cut, then SIGKILL while it is still away: the journal in Redis brings every acknowledged write to PostgreSQL once', async () => {
  await cutThenKill('while PostgreSQL is away');
}, 60_000);

it('PostgreSQL cut and back, then SIGKILL while the journal drains: every acknowledged write reaches PostgreSQL once', async () => {
  await cutThenKill('while the journal drains');
}, 60_000);

it('PostgreSQL cut and back, then SIGKILL while the drain holds its lease: the next process still moves everything by itself', async () => {
  await cutThenKill('holding the sync lease');
}, 60_000);
