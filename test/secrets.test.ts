import { inspect } from 'node:util';
import { afterAll, expect } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { itIfAble, missingRedisServer } from './helpers/run-registry.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Guarantee 8: passwords in connection URLs never appear in a log line, an event or an error.
const REDIS_SECRET = 'redis-Secret-4f9c';
const PG_SECRET = 'pg-Secret-77aa';
const names = isolation('secrets');
afterAll(() => cleanupPostgres(databaseUrl(), names.schema));

itIfAble(missingRedisServer())('no captured log line, event or error contains a password, through outages and a wrong password', async () => {
  const server = await PrivateRedis.start({ password: REDIS_SECRET });
  const redisProxy = await FaultProxy.start(server.url);
  const pgProxy = await FaultProxy.start(databaseUrl());
  const pgUrl = pgProxy.url(databaseUrl()).replace('postgres@', `postgres:${PG_SECRET}@`);
  const captured: unknown[] = [];
  const logger = {
    debug: (...a: unknown[]) => captured.push(a),
    info: (...a: unknown[]) => captured.push(a),
    warn: (...a: unknown[]) => captured.push(a),
    error: (...a: unknown[]) => captured.push(a),
  };
  const store = new TieredStore({
    logger,
    probeIntervalMs: 50,
    redis: new RedisAdapter({ url: redisProxy.url(server.url), keyPrefix: names.keyPrefix, timeoutMs: 300 }),
    postgres: new PostgresAdapter({ url: pgUrl, schema: names.schema, timeoutMs: 500, connectTimeoutMs: 500 }),
  });
  for (const event of ['tierDown', 'tierUp', 'syncError', 'deadLetter'] as const) store.on(event, (e: unknown) => captured.push(e));
  const attempt = async (work: () => Promise<unknown>) => work().catch((error: unknown) => captured.push(error));

  await attempt(() => store.addMemory('u', 'user', 'hello'));
  for (const fault of ['refuse', 'hang', 'cut'] as const) {
    await Promise.all([redisProxy[fault](), pgProxy[fault]()]);
    await attempt(() => store.addMemory('u', 'user', fault));
    await attempt(() => store.getHistory('u', { limit: 100 }));
    await attempt(() => store.syncNow());
    await Promise.all([redisProxy.pass(), pgProxy.pass()]);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  await store.close();

  // Redis refusing the password it is given: its own error must not carry it either.
  const wrong = new TieredStore({ logger, redis: new RedisAdapter({ url: server.url.replace(REDIS_SECRET, 'Wrong-Pass-123') }) });
  wrong.on('tierDown', (e) => captured.push(e));
  await attempt(() => wrong.addMemory('u', 'user', 'x'));
  await wrong.close();
  await attempt(async () => new PostgresAdapter({ url: `mysql://u:${PG_SECRET}@h/db` }));
  await attempt(async () => TieredStore.fromEnv({ REDIS_URL: `http://default:${REDIS_SECRET}@h:1` }));

  const everything = inspect(captured, { depth: 12, showHidden: false });
  expect(captured.length).toBeGreaterThan(10);
  expect(everything).toMatch(/is down/);
  for (const secret of [REDIS_SECRET, PG_SECRET, 'Wrong-Pass-123']) expect(everything).not.toContain(secret);

  await Promise.all([redisProxy.close(), pgProxy.close()]);
  await server.stop();
});
