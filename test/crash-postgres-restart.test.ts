import { afterEach, expect, it } from 'vitest';
import { checkStored, CrashChild, drainedOnItsOwn, killAllChildren, leaseOf, logsOf, recover } from './helpers/crash.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { MARGIN_MS } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Crash test (e): PostgreSQL "restarts" under write-through writers (the proxy drops every
// connection at once and refuses new ones for a while), and Redis's connections are cut over and
// over just as PostgreSQL comes back, so the drain meets transient errors of the other tier. With
// no startSync and no syncNow, the store must drain the journal on its own, retrying through them.
const REDIS_TIMEOUT_MS = 500;
const PG_TIMEOUT_MS = 1000;
const names = isolation('crash_pg_restart');
const proxies: FaultProxy[] = [];
afterEach(async () => {
  await killAllChildren();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await cleanupRedis(redisUrl(), names.keyPrefix).catch(() => {});
  await cleanupPostgres(databaseUrl(), names.schema);
});

it('PostgreSQL restarted under writers, Redis cut as it returns: the journal drains on its own, every acknowledged write lands once', async () => {
  const redis = await FaultProxy.start(redisUrl());
  const pg = await FaultProxy.start(databaseUrl());
  proxies.push(redis, pg);
  const tag = 'pgr';
  const child = CrashChild.start({
    mode: 'stream',
    redis: { url: redis.url(redisUrl()) },
    databaseUrl: pg.url(databaseUrl()),
    ...names,
    writeMode: 'write-through',
    redisTimeoutMs: REDIS_TIMEOUT_MS,
    pgTimeoutMs: PG_TIMEOUT_MS,
    writers: 8,
    users: ['pr0', 'pr1', 'pr2', 'pr3'],
    tag,
    count: 0,
    pauseMs: 4,
    reportPendingMs: 100,
  });
  await child.acks(200);

  await pg.refuse();
  const before = child.acked.size;
  await child.acks(before + 1500, 20_000);
  await pg.pass();
  await child.waitFor((l) => /postgres is up again/.test(l), 10_000, '"postgres is up again"');
  // Transient Redis errors while the drain runs (a client reconnecting: "Stream isn't writeable"):
  // every Redis connection reset every 120 ms for 1.5 s, so some land in the middle of a pass.
  for (let cut = 0; cut < 12; cut++) {
    await redis.cut();
    await new Promise((resolve) => setTimeout(resolve, 120));
  }

  // On its own: nobody calls syncNow or startSync. Redis's pending count must fall to zero.
  const left = await drainedOnItsOwn(redisUrl(), names.keyPrefix);
  const journaled = logsOf(child);
  expect(
    left,
    `Redis still holds ${left} pending writes 15 s after PostgreSQL returned (${await leaseOf(redisUrl(), names.keyPrefix)}); last logs:\n${journaled}`,
  ).toBe(0);
  await expect.poll(() => child.lines.findLast((l) => l.startsWith('PENDING ')), { timeout: 5000 }).toBe('PENDING 0');
  await child.kill();

  // A fresh process finds nothing left to move.
  const { pending, moved } = await recover({ url: redisUrl() }, databaseUrl(), names);
  expect(pending).toBe(0);
  expect(moved[0], 'messages a fresh process still had to move').toBe(0);
  const stored = await checkStored(databaseUrl(), names.schema, child.acked, tag);
  console.info(`postgres restart: ${stored.acked} acknowledged (${child.failures.length} refused), slowest call ${child.slowest} ms`);
  expect(stored.missing).toEqual([]);
  expect(stored.duplicated).toEqual([]);
  expect(child.failures).toEqual([]);
  expect(child.slowest).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
}, 90_000);
