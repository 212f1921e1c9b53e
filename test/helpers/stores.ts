import { PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../../src/index.js';
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

export { isolation };
