import { afterAll, beforeAll, expect, it } from 'vitest';
import { ErrorCode, PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../src/index.js';
import { K1, K2 } from './helpers/encryption.js';
import { startRedisCluster, type RedisClusterHandle } from './helpers/redis-cluster.js';
import { describeIfAble, missingRedisServer } from './helpers/run-registry.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Encryption at rest on a real Redis Cluster: each user's data keys live in the user's slot, so
// sealing stays atomic per user; a rotation re-wraps the keys on every master; deleteUser shreds.
describeIfAble('encryption on a Redis Cluster', missingRedisServer(), () => {
  let cluster: RedisClusterHandle;
  const names = isolation('enc_cluster');
  const nodes = () => cluster.nodes.map((n) => `redis://${n.host}:${n.port}`);
  const stores: TieredStore[] = [];
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await cluster?.stop();
    await cleanupPostgres(databaseUrl(), names.schema);
  });

  function store(options: TieredStoreOptions, postgres: boolean): TieredStore {
    const s = new TieredStore({
      logger: false,
      ...options,
      redis: new RedisAdapter({ nodes: nodes(), keyPrefix: `${names.keyPrefix}${postgres ? 'c' : 'd'}` }),
      postgres: postgres ? new PostgresAdapter({ url: databaseUrl(), schema: names.schema }) : undefined,
    });
    stores.push(s);
    return s;
  }

  it.each([false, true])(
    'PostgreSQL behind it: %s; users on every master, rotated, one of them shredded',
    async (postgres) => {
      const users = Array.from({ length: 30 }, (_, i) => `cu${i}`);
      const s = store({ encryption: { keys: { k1: K1, k2: K2 }, current: 'k1' }, writeMode: 'write-behind' }, postgres);
      for (const user of users) await s.addMemory(user, 'user', `SECRET ${user}`);
      await s.rotateEncryptionKey('k2');
      await s.deleteUser('cu0');
      await s.syncNow();
      const masters = new Set<number>();
      for (const user of users) masters.add((await cluster.masterForKey(`${names.keyPrefix}${postgres ? 'c' : 'd'}:{${user}}:k`)).port);
      expect(masters.size).toBe(3);
      // Only the new master key from here on.
      const after = store({ encryption: { keys: { k2: K2 }, current: 'k2' } }, postgres);
      for (const user of users.slice(1)) expect((await after.getHistory(user)).map((m) => m.content)).toEqual([`SECRET ${user}`]);
      expect(await after.getHistory('cu0')).toEqual([]);
      const without = store({ encryption: { keys: { k1: K1 }, current: 'k1' } }, postgres);
      await expect(without.getHistory('cu5')).rejects.toMatchObject({ code: ErrorCode.ENCRYPTION_KEY_MISSING });
    },
    60_000,
  );
});
