/**
 * Proves test/helpers/redis-cluster.ts against a real Redis Cluster it starts on loopback
 * (3 masters + 3 replicas): routing to all masters, MULTI on one hash tag, failover of the
 * master owning that tag without data loss, rejoin of the crashed node, and clean shutdown.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Redis, type Cluster } from 'ioredis';
import { startRedisCluster, type RedisClusterHandle, type RedisNodeAddress } from './helpers/redis-cluster';
import { describeIfAble, itIfAble, missingRedisServer } from './helpers/run-registry.js';

const usingExternalCluster = Boolean(process.env['TEST_REDIS_CLUSTER_NODES']?.trim());
/** Crashing and restarting nodes needs a cluster this run started. */
const localOnly = usingExternalCluster ? 'TEST_REDIS_CLUSTER_NODES names a cluster this run did not start: its nodes cannot be crashed or stopped' : undefined;

/** Retry `fn` (ioredis may still be refreshing its slot map) until it passes or the deadline hits. */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(intervalMs);
    }
  }
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (answered: boolean): void => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Run `fn` on a standalone (non-cluster) connection to one node. */
async function onNode<T>(node: RedisNodeAddress, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ host: node.host, port: node.port, lazyConnect: true, retryStrategy: () => null });
  r.on('error', () => {});
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

function nodeKey(n: RedisNodeAddress): string {
  return `${n.host}:${n.port}`;
}

describeIfAble('redis-cluster test harness', usingExternalCluster ? undefined : missingRedisServer(), () => {
  let handle: RedisClusterHandle;
  let cluster: Cluster;
  const clusterErrors: string[] = [];
  let u1MasterPort = 0;

  beforeAll(async () => {
    const t0 = performance.now();
    handle = await startRedisCluster();
    console.info(
      `[redis-cluster] ${usingExternalCluster ? 'using external' : 'started'} cluster on ` +
        `${handle.nodes.map(nodeKey).join(', ')} in ${Math.round(performance.now() - t0)} ms`,
    );
    cluster = new Redis.Cluster(handle.nodes, {
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: 1_000,
      redisOptions: { connectTimeout: 1_000 },
    });
    cluster.on('error', (err: Error) => clusterErrors.push(err.message));
    await cluster.ping();
  }, 60_000);

  afterAll(async () => {
    cluster?.disconnect();
    await handle?.stop();
  }, 30_000);

  it('starts 3 masters with 1 replica each, masters listed first', async () => {
    if (!usingExternalCluster) expect(handle.nodes).toHaveLength(6);
    const masters = await handle.masters();
    expect(masters).toHaveLength(3);
    if (!usingExternalCluster) {
      expect(new Set(masters.map((m) => m.port))).toEqual(new Set(handle.nodes.slice(0, 3).map((n) => n.port)));
      for (const replica of handle.nodes.slice(3)) {
        const role = await onNode(replica, async (r) => (await r.info('replication')).match(/role:(\w+)/)?.[1]);
        expect(role).toBe('slave');
      }
    }
  });

  it('SET/GET through the Cluster client reaches keys on all three masters', async () => {
    // Find hash tags whose slots are owned by three different masters.
    const tagByMaster = new Map<number, string>();
    for (let i = 0; tagByMaster.size < 3 && i < 200; i++) {
      const tag = `{t${i}}`;
      const owner = await handle.masterForKey(tag);
      if (!tagByMaster.has(owner.port)) tagByMaster.set(owner.port, tag);
    }
    expect(tagByMaster.size).toBe(3);

    for (const [port, tag] of tagByMaster) {
      const key = `${tag}:greeting`;
      expect(await cluster.set(key, `hello from ${port}`)).toBe('OK');
      expect(await cluster.get(key)).toBe(`hello from ${port}`);
      // The key physically lives on the master that owns its slot.
      const direct = await onNode({ host: '127.0.0.1', port }, (r) => r.get(key));
      expect(direct).toBe(`hello from ${port}`);
    }
    expect(cluster.nodes('master')).toHaveLength(3);
  });

  it('MULTI on keys sharing the {u1} hash tag is atomic on one node, and replicated (WAIT)', async () => {
    const owner = await handle.masterForKey('{u1}');
    u1MasterPort = owner.port;

    const results = await cluster.multi().set('{u1}:name', 'alice').incrby('{u1}:counter', 41).incr('{u1}:counter').rpush('{u1}:history', 'm1', 'm2').exec();
    expect(results).toEqual([
      [null, 'OK'],
      [null, 41],
      [null, 42],
      [null, 2],
    ]);

    // WAIT must run on the same connection that did the writes: the pool connection to the owner.
    const ownerConn = cluster.nodes('master').find((n) => n.options.port === owner.port);
    expect(ownerConn, `pool connection to ${nodeKey(owner)}`).toBeDefined();
    const acked = Number(await ownerConn!.call('WAIT', 1, 1_000));
    expect(acked).toBeGreaterThanOrEqual(1);

    expect(await cluster.get('{u1}:name')).toBe('alice');
    expect(await cluster.lrange('{u1}:history', 0, -1)).toEqual(['m1', 'm2']);
  });

  itIfAble(localOnly)(
    'after failover of the {u1} master, earlier writes are readable and new writes work',
    async () => {
      expect(u1MasterPort).toBeGreaterThan(0);
      const t0 = performance.now();
      const { newMasterPort } = await handle.failover(u1MasterPort);
      console.info(`[redis-cluster] failover of 127.0.0.1:${u1MasterPort} -> 127.0.0.1:${newMasterPort} ` + `in ${Math.round(performance.now() - t0)} ms`);
      expect(newMasterPort).not.toBe(u1MasterPort);

      const masterPorts = (await handle.masters()).map((m) => m.port);
      expect(masterPorts).toHaveLength(3);
      expect(masterPorts).toContain(newMasterPort);
      expect(masterPorts).not.toContain(u1MasterPort);
      expect((await handle.masterForKey('{u1}')).port).toBe(newMasterPort);
      expect(await portAnswers(u1MasterPort)).toBe(false);

      const t1 = performance.now();
      // Data written (and WAITed for) before the crash survived on the promoted replica.
      await eventually(async () => {
        expect(await cluster.get('{u1}:name')).toBe('alice');
      });
      console.info(`[redis-cluster] ioredis read after failover took ${Math.round(performance.now() - t1)} ms`);
      expect(await cluster.get('{u1}:counter')).toBe('42');
      expect(await cluster.lrange('{u1}:history', 0, -1)).toEqual(['m1', 'm2']);

      // New writes work, including MULTI, and land on the new master.
      const results = await cluster.multi().rpush('{u1}:history', 'm3').incr('{u1}:counter').exec();
      expect(results).toEqual([
        [null, 3],
        [null, 43],
      ]);
      expect(await cluster.set('{u1}:after-failover', 'yes')).toBe('OK');
      expect(await cluster.get('{u1}:after-failover')).toBe('yes');
      const direct = await onNode({ host: '127.0.0.1', port: newMasterPort }, (r) => r.get('{u1}:after-failover'));
      expect(direct).toBe('yes');
    },
    45_000,
  );

  itIfAble(localOnly)(
    'the crashed master restarts with its config file and rejoins as a replica',
    async () => {
      const t0 = performance.now();
      await handle.startNode(u1MasterPort);
      console.info(`[redis-cluster] restart + rejoin of 127.0.0.1:${u1MasterPort} took ${Math.round(performance.now() - t0)} ms`);
      const info = await onNode({ host: '127.0.0.1', port: u1MasterPort }, (r) => r.info('replication'));
      expect(info).toMatch(/role:slave/);
      expect(info).toMatch(/master_link_status:up/);
      expect((await handle.masters()).map((m) => m.port)).not.toContain(u1MasterPort);
      // It resynced from the new master.
      await eventually(async () => {
        const value = await onNode({ host: '127.0.0.1', port: u1MasterPort }, async (r) => {
          await r.call('READONLY');
          return r.get('{u1}:after-failover');
        });
        expect(value).toBe('yes');
      }, 10_000);
    },
    40_000,
  );

  it('TEST_REDIS_CLUSTER_NODES makes startRedisCluster reuse an existing cluster', async () => {
    const previous = process.env['TEST_REDIS_CLUSTER_NODES'];
    process.env['TEST_REDIS_CLUSTER_NODES'] = handle.nodes.map(nodeKey).join(',');
    try {
      const reused = await startRedisCluster();
      expect(reused.external).toBe(true);
      expect(reused.nodes).toEqual(handle.nodes);
      expect(reused.tempDirs).toEqual([]);
      expect(await reused.masters()).toHaveLength(3);
      await expect(reused.failover(handle.nodes[0]!.port)).rejects.toThrow(/requires a locally started cluster/);
      await expect(reused.stopNode(handle.nodes[0]!.port)).rejects.toThrow(/requires a locally started cluster/);
      await reused.stop(); // no-op: must not stop a cluster it did not start
      expect(await cluster.get('{u1}:name')).toBe('alice');
    } finally {
      if (previous === undefined) delete process.env['TEST_REDIS_CLUSTER_NODES'];
      else process.env['TEST_REDIS_CLUSTER_NODES'] = previous;
    }
  });

  itIfAble(localOnly)('stop() kills every node, removes temp dirs, and is idempotent', async () => {
    const ports = handle.nodes.map((n) => n.port);
    const dirs = [...handle.tempDirs];
    expect(dirs).toHaveLength(6);
    for (const dir of dirs) expect(existsSync(dir)).toBe(true);

    await cluster.quit();
    const t0 = performance.now();
    await handle.stop();
    await handle.stop();
    console.info(`[redis-cluster] stop() took ${Math.round(performance.now() - t0)} ms`);

    for (const port of ports) expect(await portAnswers(port), `port ${port} still answers`).toBe(false);
    for (const dir of dirs) expect(existsSync(dir), `${dir} still exists`).toBe(false);
    await expect(handle.failover(ports[0]!)).rejects.toThrow(/stopped/);
  });
});
