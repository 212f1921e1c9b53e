import { afterAll, describe, expect, it } from 'vitest';
import { TieredStore } from '../src/index.js';
import { postgresFromEnv, redisFromEnv } from '../src/env.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

const names = isolation('from_env');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

describe('Redis variables, in order of preference', () => {
  it('REDIS_URL first, then REDIS_PUBLIC_URL', () => {
    expect(redisFromEnv({ REDIS_URL: 'redis://a:6379', REDIS_PUBLIC_URL: 'redis://b:1' })).toEqual({ url: 'redis://a:6379', source: 'REDIS_URL' });
    expect(redisFromEnv({ REDIS_PUBLIC_URL: 'rediss://default:pw@proxy.rlwy.net:34567' })).toEqual({
      url: 'rediss://default:pw@proxy.rlwy.net:34567',
      source: 'REDIS_PUBLIC_URL',
    });
  });
  it('then REDISHOST + REDISPORT with REDISUSER and REDISPASSWORD (escaped)', () => {
    expect(redisFromEnv({ REDISHOST: 'redis.railway.internal', REDISPORT: '6380', REDISUSER: 'default', REDISPASSWORD: 'p@ss:w/rd' })).toEqual({
      url: 'redis://default:p%40ss%3Aw%2Frd@redis.railway.internal:6380',
      source: 'REDISHOST/REDISPORT',
    });
    expect(redisFromEnv({ REDISHOST: 'h' })?.url).toBe('redis://h:6379');
    expect(redisFromEnv({ REDISHOST: '::1', REDISPASSWORD: 'pw' })?.url).toBe('redis://:pw@[::1]:6379');
  });
  it('nothing set (or blank) means no Redis', () => {
    expect(redisFromEnv({})).toBeUndefined();
    expect(redisFromEnv({ REDIS_URL: '  ', REDISPORT: '6379' })).toBeUndefined();
  });
  it('an unusable value is a coded error naming the variable, password masked', () => {
    expect(() => redisFromEnv({ REDIS_URL: 'http://u:topsecret@h:1' })).toThrow(expect.objectContaining({ code: 'INVALID_URL' }));
    expect(() => redisFromEnv({ REDIS_URL: 'http://u:topsecret@h:1' })).toThrow(/REDIS_URL.*u:\*\*\*@h/);
    expect(() => redisFromEnv({ REDISHOST: 'h', REDISPORT: 'abc' })).toThrow(expect.objectContaining({ code: 'INVALID_URL' }));
  });
});

describe('PostgreSQL variables, in order of preference', () => {
  it('DATABASE_URL first, then DATABASE_PUBLIC_URL', () => {
    expect(postgresFromEnv({ DATABASE_URL: 'postgres://a/db', DATABASE_PUBLIC_URL: 'postgres://b/db' })?.source).toBe('DATABASE_URL');
    expect(postgresFromEnv({ DATABASE_PUBLIC_URL: 'postgresql://u:p@b:5/db?sslmode=require' })).toEqual({
      url: 'postgresql://u:p@b:5/db?sslmode=require',
      source: 'DATABASE_PUBLIC_URL',
    });
  });
  it('then PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE', () => {
    expect(postgresFromEnv({ PGHOST: 'db.internal', PGPORT: '6543', PGUSER: 'bot', PGPASSWORD: 's3cr#t', PGDATABASE: 'railway' })?.url).toBe(
      'postgres://bot:s3cr%23t@db.internal:6543/railway',
    );
    expect(postgresFromEnv({ PGHOST: 'h' })?.url).toBe('postgres://postgres@h:5432/postgres');
  });
  it('nothing set means no PostgreSQL; a bad value is a coded error', () => {
    expect(postgresFromEnv({ PGUSER: 'x' })).toBeUndefined();
    expect(() => postgresFromEnv({ DATABASE_URL: 'not a url' })).toThrow(expect.objectContaining({ code: 'INVALID_URL' }));
  });
});

describe('TieredStore.fromEnv', () => {
  const lines: string[] = [];
  const logger = { debug: () => {}, info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };

  it('is memory-only with nothing set, and says so in one info line', async () => {
    lines.length = 0;
    const store = TieredStore.fromEnv({}, { logger });
    expect(store.health()).toMatchObject({ redis: 'absent', postgres: 'absent', memory: 'up' });
    await store.addMemory(1, 'user', 'works');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/memory/);
    await store.close();
  });

  it('uses Redis and PostgreSQL from the variables, logs them masked, and works', async () => {
    lines.length = 0;
    const withPassword = (url: string) => url.replace('://', '://postgres:hunter2-pg@');
    const store = TieredStore.fromEnv(
      { REDIS_URL: redisUrl(), DATABASE_URL: withPassword(databaseUrl()) },
      { logger, redis: { keyPrefix: names.keyPrefix }, postgres: { schema: names.schema } },
    );
    await store.addMemory('env-user', 'user', 'via env');
    expect((await store.getHistory('env-user')).map((m) => m.content)).toEqual(['via env']);
    expect(store.health()).toMatchObject({ redis: 'up', postgres: 'up' });
    expect(lines[0]).toMatch(/redis .*postgres /);
    expect(lines.join('\n')).not.toContain('hunter2-pg');
    await store.close();
  });

  it('reads process.env when no environment is passed', async () => {
    const store = TieredStore.fromEnv(undefined, { logger: false });
    expect(store.health().memory).toBe('up');
    await store.close();
  });
});
