import { inspect } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { itIfAble, missingRedisServer } from './helpers/run-registry.js';
import { encryptionFromEnv } from '../src/env.js';
import { OutageRig } from './helpers/outage.js';
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

// Issue 16: encryption keys never appear in a log line, an event, an error, stats() or health().
it('no captured log line, event, error, stats or health holds an encryption key, through outages, a rotation and missing keys', async () => {
  const k1 = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256));
  const k2 = Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex');
  const forms = [k1, k2].flatMap((k) => [k.toString('hex'), k.toString('base64'), k.toString('base64url'), k.toString('latin1')]);
  const captured: unknown[] = [];
  const rig = await OutageRig.start({ encryption: { keys: { k1, k2 }, current: 'k1' }, historyLimit: 10 });
  const attempt = async (work: () => Promise<unknown>) => work().catch((error: unknown) => captured.push(error));
  try {
    const s = rig.store;
    for (const event of ['tierDown', 'tierUp', 'syncError', 'deadLetter'] as const) s.on(event, (e: unknown) => captured.push(e));
    await attempt(() => s.addMemory('u', 'user', 'hello'));
    await rig.pg.refuse();
    await attempt(() => s.addMemory('u', 'user', 'during'));
    await rig.pg.pass();
    await attempt(() => s.rotateEncryptionKey('k2'));
    await attempt(() => s.rotateEncryptionKey('nope'));
    await attempt(() => s.syncNow());
    const keyless = rig.anotherProcess({ encryption: { keys: { k3: Buffer.alloc(32, 3) }, current: 'k3' } });
    await attempt(() => keyless.getHistory('u'));
    await keyless.close();
    await attempt(async () => new TieredStore({ encryption: { keys: { k1: k1.subarray(0, 31) }, current: 'k1' } }));
    await attempt(async () => encryptionFromEnv({ STORE_ENCRYPTION_KEYS: `k1:${k1.subarray(0, 30).toString('base64')}` }));
    captured.push(s.stats(), s.health(), s.deadLetters(), rig.logs);
  } finally {
    await rig.close();
  }
  const everything = inspect(captured, { depth: 12, showHidden: false });
  expect(everything).toMatch(/ENCRYPTION_KEY_MISSING/);
  expect(everything).toMatch(/re-wrapped/);
  for (const form of forms) expect(everything).not.toContain(form);
}, 60_000);
