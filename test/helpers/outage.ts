import postgres from 'postgres';
import { expect } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../../src/index.js';
import { FaultProxy } from './fault-proxy.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl, type Isolation } from './services.js';

export const REDIS_TIMEOUT_MS = 500;
export const PG_TIMEOUT_MS = 1000;
/** Slack for a loaded 2-core machine on top of a deadline. */
export const MARGIN_MS = 500;

export interface Call {
  ms: number;
  /** Whether the store had marked a tier down before the call started. */
  afterDown: boolean;
  error?: unknown;
}

/**
 * A store whose Redis and PostgreSQL sit behind fault proxies, with a record of every write it
 * acknowledged and how long each call took, and checks that run against the servers directly.
 */
export class OutageRig {
  readonly acked = new Map<string, string[]>();
  readonly calls: Call[] = [];
  readonly downSince = new Map<string, number>();
  readonly sql = postgres(databaseUrl(), { onnotice: () => {}, max: 2 });
  /** Redis as the checks reach it, without the proxy. */
  readonly redisDirect: string;

  private constructor(
    readonly names: Isolation,
    readonly redis: FaultProxy,
    readonly pg: FaultProxy,
    readonly store: TieredStore,
    readonly logs: string[],
    redisTarget: string,
  ) {
    this.redisDirect = redisTarget;
    store.on('tierDown', ({ tier }) => this.downSince.set(tier, Date.now()));
    store.on('tierUp', ({ tier }) => this.downSince.delete(tier));
  }

  /** A rig with its own key prefix and schema; `before` sets faults up before the store exists. */
  static async start(
    options: TieredStoreOptions = {},
    { redisTarget = redisUrl(), before }: { redisTarget?: string; before?: (redis: FaultProxy, pg: FaultProxy) => Promise<void> } = {},
  ): Promise<OutageRig> {
    const names = isolation('outage');
    const redis = await FaultProxy.start(redisTarget);
    const pg = await FaultProxy.start(databaseUrl());
    await before?.(redis, pg);
    const logs: string[] = [];
    const log = (m: string) => logs.push(m);
    const store = new TieredStore({
      probeIntervalMs: 100,
      logger: { debug: () => {}, info: log, warn: log, error: log },
      ...options,
      redis: new RedisAdapter({ url: redis.url(redisTarget), keyPrefix: names.keyPrefix, timeoutMs: REDIS_TIMEOUT_MS }),
      // A small pool, so a few hung connections would starve it unless the adapter replaces them.
      postgres: new PostgresAdapter({ url: pg.url(databaseUrl()), schema: names.schema, timeoutMs: PG_TIMEOUT_MS, connectTimeoutMs: PG_TIMEOUT_MS, max: 2 }),
    });
    return new OutageRig(names, redis, pg, store, logs, redisTarget);
  }

  /** Times a call and records whether a tier was already marked down when it started. */
  async timed<T>(work: () => Promise<T>): Promise<T | undefined> {
    const afterDown = this.downSince.size > 0;
    const started = performance.now();
    let result: T | undefined;
    let error: unknown;
    try {
      result = await work();
    } catch (e) {
      error = e;
    }
    this.calls.push({ ms: performance.now() - started, afterDown, ...(error === undefined ? {} : { error }) });
    return result;
  }

  async write(user: string, text: string): Promise<void> {
    const message = await this.timed(() => this.store.addMemory(user, 'user', text));
    if (message) this.acked.set(user, [...(this.acked.get(user) ?? []), message.id]);
  }

  async writeMany(count: number, users = 3, prefix = 'm'): Promise<void> {
    for (let i = 0; i < count; i++) await this.write(`u${i % users}`, `${prefix}${i}`);
  }

  /** Waits until both tiers are up and nothing is pending. */
  async recovered(timeoutMs = 15_000): Promise<void> {
    await expect.poll(() => this.store.health(), { timeout: timeoutMs, interval: 100 }).toMatchObject({ redis: 'up', postgres: 'up' });
    await expect.poll(async () => (await this.store.syncNow()).pending, { timeout: timeoutMs, interval: 200 }).toBe(0);
  }

  /** Every acknowledged write is in PostgreSQL exactly once, and reads (hot and cold, any process) are complete. */
  async verify(historyLimit = 50): Promise<{ acked: number; stored: number; duplicates: number }> {
    await this.recovered();
    const table = this.sql(`${this.names.schema}.messages`);
    let acked = 0;
    let stored = 0;
    const fresh = this.anotherProcess({ historyLimit });
    try {
      for (const [user, ids] of this.acked) {
        const expected = [...ids].sort();
        const rows = await this.sql`select id from ${table} where user_id = ${user} order by id`;
        acked += ids.length;
        stored += rows.length;
        expect(
          rows.map((r) => r.id as string),
          `PostgreSQL rows of ${user}`,
        ).toEqual(expected);
        expect(
          (await this.store.getHistory(user, { limit: 10_000 })).map((m) => m.id),
          `full history of ${user}`,
        ).toEqual(expected);
        const tail = expected.slice(-historyLimit);
        expect(
          (await this.store.getHistory(user)).map((m) => m.id),
          `hot history of ${user}`,
        ).toEqual(tail);
        expect(
          (await fresh.getHistory(user)).map((m) => m.id),
          `another process's read of ${user}`,
        ).toEqual(tail);
      }
    } finally {
      await fresh.close();
    }
    const [dup] = await this.sql`select count(*) - count(distinct id) as d from ${table}`;
    return { acked, stored, duplicates: Number(dup?.d) };
  }

  /** A store on the same servers without the proxies, as another process of the bot would be; the caller closes it. */
  anotherProcess(options: TieredStoreOptions = {}): TieredStore {
    return new TieredStore({
      logger: false,
      ...options,
      redis: new RedisAdapter({ url: this.redisDirect, keyPrefix: this.names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: this.names.schema }),
    });
  }

  slowest(filter: (call: Call) => boolean = () => true): number {
    return Math.max(0, ...this.calls.filter(filter).map((c) => c.ms));
  }

  async close(): Promise<void> {
    await this.redis.pass();
    await this.pg.pass();
    await this.store.close();
    await Promise.all([this.redis.close(), this.pg.close(), this.sql.end()]);
    await cleanupRedis(this.redisDirect, this.names.keyPrefix).catch(() => {});
    await cleanupPostgres(databaseUrl(), this.names.schema);
  }
}
