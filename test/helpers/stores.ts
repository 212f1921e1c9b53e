import { PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../../src/index.js';
import type { AdapterConfig } from '../../src/adapters/contract.js';
import { Secrets, silentLogger } from '../../src/logger.js';
import { databaseUrl, isolation, redisUrl, type Isolation } from './services.js';

export type Topology = 'memory only' | 'redis only' | 'postgres only' | 'write-through' | 'write-behind';
export const TOPOLOGIES: Topology[] = ['memory only', 'redis only', 'postgres only', 'write-through', 'write-behind'];

/** A store on the real servers in one of the supported layouts, named apart by `names`. */
export function makeStore(topology: Topology, names: Isolation, options: TieredStoreOptions = {}): TieredStore {
  const redis = topology !== 'memory only' && topology !== 'postgres only';
  const postgres = topology !== 'memory only' && topology !== 'redis only';
  return new TieredStore({
    logger: false,
    ...options,
    ...(topology === 'write-behind' ? { writeMode: 'write-behind' } : {}),
    redis: redis ? new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }) : undefined,
    postgres: postgres ? new PostgresAdapter({ url: databaseUrl(), schema: names.schema }) : undefined,
  });
}

/** What a store binds an adapter of the durable tier with (nothing expires), for tests that drive an adapter alone. */
export function durableConfig(historyLimit = 50): AdapterConfig {
  return { role: 'durable', historyLimit, ttlMs: { history: 0, userData: 0, subscribers: 0 }, logger: silentLogger, secrets: new Secrets() };
}

export { isolation };
