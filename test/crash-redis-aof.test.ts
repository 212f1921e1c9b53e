import { afterEach, expect, it } from 'vitest';
import { checkStored, CrashChild, drainedOnItsOwn, killAllChildren, leaseOf, logsOf, recover } from './helpers/crash.js';
import { MARGIN_MS } from './helpers/outage.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Crash test (d): a private redis-server with appendonly yes / appendfsync always, SIGKILLed twice
// and restarted while a write-behind process writes and syncs in the background (startSync). What
// Redis acknowledged survives in its append-only file, and so does whatever the crash cut short
// mid-pass: the background sync must still drain it all by itself, and nothing may land twice.
const REDIS_TIMEOUT_MS = 500;
const WRITERS = 6;
const WRITES_EACH = 400;
const TOTAL_WRITES = WRITERS * WRITES_EACH;
const PG_TIMEOUT_MS = 1000;
const names = isolation('crash_redis_aof');
let server: PrivateRedis | undefined;
afterEach(async () => {
  await killAllChildren();
  await server?.stop();
  server = undefined;
  await cleanupPostgres(databaseUrl(), names.schema);
});

it('Redis (append-only, fsync always) killed and restarted under write-behind writers: the background sync drains it all, each write once', async () => {
  server = await PrivateRedis.start({ appendOnly: true });
  const tag = 'aof';
  const child = CrashChild.start({
    mode: 'stream',
    redis: { url: server.url },
    databaseUrl: databaseUrl(),
    ...names,
    writeMode: 'write-behind',
    redisTimeoutMs: REDIS_TIMEOUT_MS,
    pgTimeoutMs: PG_TIMEOUT_MS,
    writers: WRITERS,
    users: ['ao0', 'ao1', 'ao2', 'ao3'],
    tag,
    count: WRITES_EACH,
    pauseMs: 4,
    startSync: 20,
    reportPendingMs: 200,
  });
  for (const [round, at] of [300, 900].entries()) {
    await child.acks(at, 20_000);
    await server.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await server.start();
    const back = () => child.lines.filter((l) => l.includes('redis is up again')).length > round;
    await child.waitFor(back, 15_000, `redis up again (restart ${round + 1})`);
    // Writes journaled again before the next crash (all of them, if the writers are that far).
    await child.acks(Math.min(child.acked.size + 100, TOTAL_WRITES), 20_000);
  }
  await child.waitFor((l) => l === 'WRITES_DONE', 60_000, 'WRITES_DONE');

  const left = await drainedOnItsOwn(server.url, names.keyPrefix);
  expect(
    left,
    `Redis still holds ${left} pending writes 15 s after the writes ended (${await leaseOf(server.url, names.keyPrefix)}); last logs:\n${logsOf(child)}`,
  ).toBe(0);
  await child.kill();

  const { pending, moved } = await recover({ url: server.url }, databaseUrl(), names);
  expect(pending).toBe(0);
  expect(moved[0], 'messages a fresh process still had to move').toBe(0);
  const stored = await checkStored(databaseUrl(), names.schema, child.acked, tag);
  console.info(`redis aof restarts: ${stored.acked} acknowledged (${child.failures.length} refused), slowest call ${child.slowest} ms`);
  expect(stored.missing).toEqual([]);
  expect(stored.duplicated).toEqual([]);
  expect(child.failures).toEqual([]);
  expect(child.slowest).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
}, 120_000);
