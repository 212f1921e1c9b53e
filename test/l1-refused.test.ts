import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { checkRedis } from '../src/cli/doctor-redis.js';
import { Output } from '../src/cli/output.js';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { describeIfAble, missingRedisServer } from './helpers/run-registry.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Issue 15: a Redis that refuses CLIENT TRACKING (an ACL, as some managed services set): the store
// runs without L1 (says so once, reads stay right) and the doctor reports the problem.

const names = isolation('l1_refused');
let redis: PrivateRedis;
let url: string;

describeIfAble('a Redis that refuses client tracking', missingRedisServer(), () => {
  beforeAll(async () => {
    redis = await PrivateRedis.start();
    const admin = new Redis(redis.url);
    await admin.call('ACL', 'SETUSER', 'bot', 'on', '>bot-Secret-7', '~*', '&*', '+@all', '-client|tracking');
    admin.disconnect();
    url = redis.url.replace('redis://', 'redis://bot:bot-Secret-7@');
  });
  afterAll(async () => {
    await redis?.stop();
    await cleanupPostgres(databaseUrl(), names.schema);
  });

  it('the store warns once, serves nothing from L1 and reads right; the doctor names the problem without the password', async () => {
    const warnings: string[] = [];
    const logger = { debug: () => {}, info: () => {}, warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) };
    const store = new TieredStore({
      logger,
      redis: new RedisAdapter({ url, keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    try {
      await store.addMemory('r1', 'user', 'a');
      for (let i = 0; i < 4; i++) expect((await store.getHistory('r1')).map((m) => m.content)).toEqual(['a']);
      expect(store.stats().l1).toMatchObject({ enabled: false, hits: 0 });
      expect(warnings.filter((w) => w.includes('refused client tracking'))).toHaveLength(1);
      expect(store.health().redis).toBe('up');
    } finally {
      await store.close();
    }

    const lines: string[] = [];
    const output = new Output({ REDIS_URL: url }, { write: (t: string) => lines.push(t) }, { write: (t: string) => lines.push(t) });
    const facts = await checkRedis({ url, source: 'REDIS_URL' }, { keyPrefix: names.keyPrefix, timeoutMs: 1000, output });
    expect(facts.reachable).toBe(true);
    expect(facts.invalidation).toBe('failed');
    expect(facts.problems.join('\n')).toMatch(/invalidation: .*NOPERM/);
    expect(JSON.stringify(facts)).not.toContain('bot-Secret-7');
  });
});
