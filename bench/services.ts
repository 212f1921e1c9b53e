import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import postgres, { type Sql } from 'postgres';
import { MemoryAdapter, PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../src/index.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Connections the store's PostgreSQL pool opens by default; the raw pool gets as many. */
export const POOL_SIZE = 10;

export type Tiers = 'redis+postgres' | 'postgres' | 'memory';

/**
 * The real servers, one unique key prefix and schema prefix for this run, the raw clients the
 * baselines use, and every store the run opens; `cleanup` removes all of it.
 */
export class Services {
  /** Start of every Redis key and PostgreSQL schema this run makes. */
  readonly run = `bench_${randomBytes(4).toString('hex')}`;
  readonly redis: Redis;
  readonly sql: Sql;
  readonly #stores: TieredStore[] = [];
  readonly #redisOf = new Map<TieredStore, RedisAdapter>();

  private constructor() {
    this.redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    this.sql = postgres(DATABASE_URL, { max: POOL_SIZE, onnotice: () => {}, connect_timeout: 5 });
  }

  static async open(): Promise<Services> {
    const services = new Services();
    try {
      await services.redis.connect();
      await services.sql`select 1`;
    } catch (error) {
      await services.cleanup().catch(() => {});
      throw new Error(`the benchmark needs Redis at ${mask(REDIS_URL)} and PostgreSQL at ${mask(DATABASE_URL)}: ${(error as Error).message}`);
    }
    return services;
  }

  /** A raw (baseline) Redis key under this run's prefix. */
  key(...parts: (string | number)[]): string {
    return `${this.run}:raw:${parts.join(':')}`;
  }

  /** A schema name under this run's prefix. */
  schema(name: string): string {
    return `${this.run}_${name}`;
  }

  /** A store on its own key prefix and schema, started and checked to be on the tiers asked for. */
  async store(name: string, tiers: Tiers, options: TieredStoreOptions = {}): Promise<TieredStore> {
    const redis = tiers === 'redis+postgres' ? new RedisAdapter({ url: REDIS_URL, keyPrefix: `${this.run}:${name}` }) : undefined;
    const pg = tiers === 'memory' ? undefined : new PostgresAdapter({ url: DATABASE_URL, schema: this.schema(name) });
    const store = new TieredStore({ redis, postgres: pg, memory: new MemoryAdapter(), logger: false, ...options });
    this.#stores.push(store);
    if (redis) this.#redisOf.set(store, redis);
    await store.syncNow(); // waits for the tiers to start (and migrations to run)
    const health = store.health();
    const want = { redis: redis ? 'up' : 'absent', postgres: pg ? 'up' : 'absent' };
    if (health.redis !== want.redis || health.postgres !== want.postgres) {
      throw new Error(`store ${name}: expected redis ${want.redis} and postgres ${want.postgres}, got ${JSON.stringify(health)}`);
    }
    return store;
  }

  /**
   * Counts the scripts (EVAL/EVALSHA) a store sends to Redis from now on: its own writes only, unlike
   * the server's command stats, which count every client of a shared Redis.
   */
  countScripts(store: TieredStore): () => number {
    const client = this.#redisOf.get(store)?.client;
    if (!client) throw new Error('countScripts: the store has no Redis');
    let count = 0;
    const send = client.sendCommand.bind(client);
    client.sendCommand = ((command: { name: string }, ...rest: unknown[]) => {
      if (command.name === 'evalsha' || command.name === 'eval') count++;
      return (send as (...args: unknown[]) => unknown)(command, ...rest);
    }) as typeof client.sendCommand;
    return () => count;
  }

  /** Deletes this run's keys (SCAN + UNLINK) and schemas (DROP SCHEMA ... CASCADE), closes everything. */
  async cleanup(): Promise<void> {
    await Promise.allSettled(this.#stores.map((store) => store.close({ timeoutMs: 20_000 })));
    if (this.redis.status === 'ready') {
      let cursor = '0';
      do {
        const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.run}:*`, 'COUNT', 1000);
        if (keys.length > 0) await this.redis.unlink(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
    const schemas = await this.sql`select nspname from pg_namespace where starts_with(nspname, ${this.run})`.catch(() => []);
    for (const { nspname } of schemas) await this.sql`drop schema if exists ${this.sql(nspname as string)} cascade`;
    await this.sql.end({ timeout: 5 });
    this.redis.disconnect();
  }
}

function mask(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
}
