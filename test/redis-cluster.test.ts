import { Redis } from 'ioredis';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRedis } from '../src/cli/doctor-redis.js';
import { Output } from '../src/cli/output.js';
import { PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../src/index.js';
import { runAdapterContract } from '../src/testing.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { startRedisCluster, type RedisClusterHandle } from './helpers/redis-cluster.js';
import { describeIfAble, missingRedisServer } from './helpers/run-registry.js';
import { redisContractOptions } from './helpers/redis-contract.js';
import { cleanupPostgres, databaseUrl, isolation } from './helpers/services.js';

// Issue 6: every guarantee on a real Redis Cluster (3 masters, 3 replicas on loopback), failover included.
// A private cluster needs redis-server, unless TEST_REDIS_CLUSTER_NODES names one (then the failover test cannot run).
describeIfAble('Redis Cluster', process.env['TEST_REDIS_CLUSTER_NODES'] ? undefined : missingRedisServer(), () => {
  let cluster: RedisClusterHandle;
  const names = isolation('redis_cluster');
  const nodes = () => cluster.nodes.map((n) => `redis://${n.host}:${n.port}`);
  const sql = postgres(databaseUrl(), { onnotice: () => {} });

  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    await sql.end();
    await cluster?.stop();
    await cleanupPostgres(databaseUrl(), names.schema);
  });

  /** Whatever a store warned about: a Redis that refuses requests would otherwise be hidden by the fallback. */
  const warnings: string[] = [];
  const logger = { debug: () => {}, info: () => {}, warn: (m: string) => warnings.push(m), error: (m: string) => warnings.push(m) };

  /** Reads `user` once (its texts must be `expected`, when given) and says how many L1 hits that added: 1 when served from L1. */
  async function l1HitsOfRead(store: TieredStore, user: string, expected?: string[]): Promise<number> {
    const before = store.stats().l1.hits;
    const texts = (await store.getHistory(user)).map((m) => m.content);
    if (expected) expect(texts).toEqual(expected);
    return store.stats().l1.hits - before;
  }

  function clusterStore(options: TieredStoreOptions = {}): TieredStore {
    return new TieredStore({
      logger,
      probeIntervalMs: 100,
      ...options,
      redis: new RedisAdapter({ nodes: nodes(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
  }

  // Each adapter under a key prefix of its own (the journal tests count what is pending under it).
  let n = 0;
  const clusterAdapter = (role: string) => async () => {
    const adapter = new RedisAdapter({ nodes: nodes(), keyPrefix: `${names.keyPrefix}c${role}${n++}` });
    return { adapter, cleanup: () => adapter.close() };
  };
  runAdapterContract('RedisAdapter alone on a Cluster', clusterAdapter('durable'), { groups: ['durable'] });
  runAdapterContract('RedisAdapter on a Cluster in front of PostgreSQL', clusterAdapter('cache'), {
    groups: ['cache', 'journal'],
    ...redisContractOptions,
  });

  it('L1 serves on a Cluster, and a write through another client reaches its next read on every master', async () => {
    warnings.length = 0;
    const reader = clusterStore();
    const writer = clusterStore();
    // Users whose keys sit on each of the three masters.
    const users = Array.from({ length: 12 }, (_, i) => `l1_cluster_${i}`);
    const masters = new Set(await Promise.all(users.map(async (u) => (await cluster.masterForKey(`${names.keyPrefix}:{${u}}:h`)).port)));
    expect(masters.size).toBe(3);
    for (const user of users) await writer.addMemory(user, 'user', 'first');
    // A miss fills L1 and Redis's copy; the fill's own change reaches the feed and drops the L1 copy
    // once, so the next read (a Redis hit) fills it again.
    for (const user of users) await reader.getHistory(user);
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const user of users) await reader.getHistory(user);
    const hits = reader.stats().l1.hits;
    for (const user of users) expect((await reader.getHistory(user)).map((m) => m.content)).toEqual(['first']);
    expect(reader.stats().l1).toMatchObject({ enabled: true });
    expect(reader.stats().l1.hits).toBe(hits + users.length);

    // Each write, acknowledged by the other client, is in the reader's next read (within the feed's
    // delay), though the reader served that user from L1 just before.
    for (const user of users) {
      // (Until the client has met every node, a node joining the feed drops the copies: read until one serves.)
      await expect.poll(() => l1HitsOfRead(reader, user, ['first']), { timeout: 3000 }).toBe(1);
      await writer.addMemory(user, 'assistant', 'second');
      const started = performance.now();
      await expect.poll(async () => (await reader.getHistory(user)).map((m) => m.content), { timeout: 2000, interval: 5 }).toEqual(['first', 'second']);
      expect(performance.now() - started).toBeLessThan(1000);
    }
    expect(reader.stats().l1.invalidations).toBeGreaterThanOrEqual(users.length);
    expect(warnings).toEqual([]);
    await Promise.all([reader.close(), writer.close()]);
  });

  it("a node's feed connections cut: L1 stops serving that node's users until they are back, then serves again", async () => {
    const reader = clusterStore();
    const writer = clusterStore();
    const user = 'l1_cluster_cut';
    const master = await cluster.masterForKey(`${names.keyPrefix}:{${user}}:h`);
    await writer.addMemory(user, 'user', 'first');
    const servedFromL1 = () => l1HitsOfRead(reader, user);
    await expect.poll(servedFromL1, { timeout: 5000 }).toBe(1);
    // Redis drops the feed's two connections on the user's master (a cut, as far as the feed can tell).
    const admin = new Redis({ host: master.host, port: master.port });
    const clients = String(await admin.client('LIST'))
      .split('\n')
      .filter((line) => /name=tiered-conversation-store:l1/.test(line));
    expect(clients.length).toBeGreaterThanOrEqual(4); // two per store
    for (const line of clients) await admin.client('KILL', 'ID', /id=(\d+)/.exec(line)![1]!);
    await writer.addMemory(user, 'assistant', 'second');
    expect((await reader.getHistory(user)).map((m) => m.content)).toEqual(['first', 'second']);
    // The feed reconnects on its own, and copies serve again.
    await expect.poll(servedFromL1, { timeout: 5000 }).toBe(1);
    await writer.addMemory(user, 'assistant', 'third');
    await expect.poll(async () => (await reader.getHistory(user)).length, { timeout: 2000, interval: 5 }).toBe(3);
    admin.disconnect();
    await Promise.all([reader.close(), writer.close()]);
  });

  it("doctor, given one node's URL, checks invalidation the way a store on the Cluster runs it: on every node", async () => {
    const url = nodes()[0]!;
    const lines: string[] = [];
    const output = new Output({ REDIS_URL: url }, { write: (t: string) => lines.push(t) }, { write: (t: string) => lines.push(t) });
    // Keys of several slots: whichever node holds the probe's key must report it.
    for (let i = 0; i < 3; i++) {
      const facts = await checkRedis({ url, source: 'REDIS_URL' }, { keyPrefix: `${names.keyPrefix}doc${i}`, timeoutMs: 2000, output });
      expect(facts).toMatchObject({ reachable: true, mode: 'cluster', cluster: true, invalidation: 'works' });
    }
  });

  describe.each(['write-through', 'write-behind'] as const)('a store on a Cluster, %s', (writeMode) => {
    it('round-trips every method, and spreads the shared keys over the masters', async () => {
      const store = clusterStore({ writeMode, historyLimit: 5 });
      const user = `rt_${writeMode}`;
      for (const text of ['a', 'b', 'c']) await store.addMemory(user, 'user', text);
      expect((await store.getHistory(user)).map((m) => m.content)).toEqual(['a', 'b', 'c']);
      await store.setUserPhone(user, '+79991234567');
      await store.setBookingData(user, { service: 'x' });
      const subscribers = Array.from({ length: 40 }, (_, i) => `sub_${writeMode}_${i}`);
      await Promise.all(subscribers.map((s) => store.addEmailSubscriber(s)));
      expect(await store.getEmailSubscribers()).toEqual(expect.arrayContaining(subscribers));
      expect(await store.isEmailSubscriber(subscribers[7]!)).toBe(true);
      await store.removeEmailSubscriber(subscribers[7]!);
      expect(await store.isEmailSubscriber(subscribers[7]!)).toBe(false);
      expect(await store.getUserPhone(user)).toBe('+79991234567');
      await store.syncNow();
      const owners = new Set<number>();
      for (let shard = 0; shard < 16; shard++) owners.add((await cluster.masterForKey(`${names.keyPrefix}:{subs:${shard}}:s`)).port);
      expect(owners.size).toBe(3);
      await store.deleteUser(user);
      expect(await store.getHistory(user)).toEqual([]);
      await store.close();
    });

    it('threads, edits, deletes, truncations, titles and drafts: every reader and PostgreSQL agree after sync', async () => {
      const [store, other] = [clusterStore({ writeMode, historyLimit: 5, draftFlushMs: 10 }), clusterStore({ writeMode, historyLimit: 5 })];
      const user = `v2_${writeMode}`;
      const m = await Promise.all(['a', 'b', 'c', 'd'].map((text, i) => store.addMemory(user, 'user', text, { thread: i < 2 ? 'x' : 'y' })));
      await Promise.all([store.getHistory(user, { thread: 'x' }), other.getHistory(user, { thread: 'y' })]);
      expect(await other.updateMessage(user, m[1]!.id, { content: 'b edited' })).toMatchObject({ content: 'b edited', thread: 'x' });
      expect(await store.deleteMessage(user, m[2]!.id)).toBe(true);
      await other.addMemory(user, 'user', 'e', { thread: 'x' });
      expect(await store.truncateAfter(user, m[1]!.id)).toBe(1);
      await store.setThreadTitle(user, 'y', 'Y');
      const draft = await other.startDraft(user, 'assistant', { thread: 'y' });
      draft.update('streaming');
      await draft.finish('streamed');
      await Promise.all([store.syncNow(), other.syncNow()]);
      for (const s of [store, other]) {
        expect((await s.getHistory(user, { thread: 'x' })).map((x) => x.content)).toEqual(['a', 'b edited']);
        expect((await s.getHistory(user, { thread: 'y' })).map((x) => x.content)).toEqual(['d', 'streamed']);
        expect((await s.listThreads(user)).threads.map((t) => [t.id, t.title, t.messages])).toEqual([
          ['y', 'Y', 2],
          ['x', null, 2],
        ]);
      }
      const rows = await sql`select thread, content, status from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
      expect(rows.map((r) => [r.thread, r.content, r.status])).toEqual([
        ['x', 'a', null],
        ['x', 'b edited', null],
        ['y', 'd', null],
        ['y', 'streamed', null],
      ]);
      await store.deleteThread(user, 'y');
      expect(await other.getHistory(user, { thread: 'y' })).toEqual([]);
      await Promise.all([store.close(), other.close()]);
    });

    it('keeps 300 concurrent appends from three instances, once each, and syncs them', async () => {
      const stores = [0, 1, 2].map(() => clusterStore({ writeMode, historyLimit: 1000 }));
      const user = `conc_${writeMode}`;
      const written = await Promise.all(Array.from({ length: 300 }, (_, i) => stores[i % 3]!.addMemory(user, 'user', `m${i}`)));
      await Promise.all(stores.map((s) => s.syncNow()));
      const rows = await sql`select id from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
      expect(rows.map((r) => r.id)).toEqual(written.map((m) => m.id).sort());
      expect((await stores[1]!.getHistory(user, { limit: 1000 })).map((m) => m.id)).toEqual(written.map((m) => m.id).sort());
      expect((await stores[2]!.syncNow()).pending).toBe(0);
      await Promise.all(stores.map((s) => s.close()));
      expect(warnings).toEqual([]);
    });
  });

  it('the shared keys do not make one hot slot: 3,000 subscribers spread over the three masters', async () => {
    const store = clusterStore({ writeMode: 'write-behind' });
    const users = Array.from({ length: 3000 }, (_, i) => `spread_${i}`);
    for (let i = 0; i < users.length; i += 100) await Promise.all(users.slice(i, i + 100).map((u) => store.addEmailSubscriber(u)));
    expect((await store.getEmailSubscribers()).filter((u) => u.startsWith('spread_'))).toHaveLength(3000);
    const perMaster = new Map<number, { subscribers: number; pendingUsers: number }>();
    for (let shard = 0; shard < 16; shard++) {
      const subs = `${names.keyPrefix}:{subs:${shard}}:s`;
      const dirty = `${names.keyPrefix}:{sync:${shard}}:queue`;
      const owner = (await cluster.masterForKey(subs)).port;
      const { Redis } = await import('ioredis');
      const node = new Redis({ port: owner, host: '127.0.0.1' });
      const ownerOfDirty = (await cluster.masterForKey(dirty)).port;
      const dirtyNode = ownerOfDirty === owner ? node : new Redis({ port: ownerOfDirty, host: '127.0.0.1' });
      const counts = perMaster.get(owner) ?? { subscribers: 0, pendingUsers: 0 };
      counts.subscribers += (await node.scard(subs)) - 1; // minus the completeness marker, if filled
      perMaster.set(owner, counts);
      const dirtyCounts = perMaster.get(ownerOfDirty) ?? { subscribers: 0, pendingUsers: 0 };
      dirtyCounts.pendingUsers += await dirtyNode.hlen(dirty);
      perMaster.set(ownerOfDirty, dirtyCounts);
      node.disconnect();
      dirtyNode.disconnect();
    }
    const shares = [...perMaster.values()].map((c) => c.pendingUsers / 3000);
    console.info(
      `shared keys per master (16 shards): ${[...perMaster].map(([port, c]) => `${port}: ${c.subscribers} subscribers, ${c.pendingUsers} pending users`).join('; ')}`,
    );
    expect(perMaster.size).toBe(3);
    expect(Math.max(...shares)).toBeLessThan(0.5);
    await store.syncNow();
    await store.close();
  });

  it('a master fails over while writers run: no acknowledged write is lost and reads are complete', async () => {
    const store = clusterStore({ historyLimit: 50 });
    const user = 'failover_user';
    const master = await cluster.masterForKey(`${names.keyPrefix}:{${user}}:h`);
    // Another client's view of a quiet user of the same master, served from its L1 before the failover.
    const reader = clusterStore({ historyLimit: 50 });
    let quiet = '';
    for (let i = 0; !quiet; i++) if ((await cluster.masterForKey(`${names.keyPrefix}:{quiet_${i}}:h`)).port === master.port) quiet = `quiet_${i}`;
    await store.addMemory(quiet, 'user', 'before');
    await reader.getHistory(quiet);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await reader.getHistory(quiet);
    await reader.getHistory(quiet);
    expect(reader.stats().l1.hits).toBeGreaterThan(0);
    const acked: string[] = [];
    const refused: unknown[] = [];
    let running = true;
    const writer = (async () => {
      for (let i = 0; running; i++) {
        const message = await store.addMemory(user, 'user', `m${i}`).catch((e: unknown) => void refused.push(e));
        if (message) acked.push(message.id);
        if (i % 5 === 0) await store.getHistory(user).catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { newMasterPort } = await cluster.failover(master.port);
    expect(newMasterPort).not.toBe(master.port);
    await new Promise((resolve) => setTimeout(resolve, 800));
    running = false;
    await writer;
    await expect.poll(() => store.health().redis, { timeout: 10_000 }).toBe('up');
    await store.syncNow();
    expect(refused).toEqual([]);
    const rows = await sql`select id from ${sql(`${names.schema}.messages`)} where user_id = ${user} order by id`;
    expect(rows.map((r) => r.id)).toEqual([...acked].sort());
    expect((await store.getHistory(user)).map((m) => m.id)).toEqual([...acked].sort().slice(-50));
    const other = clusterStore({ historyLimit: 50 });
    expect((await other.getHistory(user)).map((m) => m.id)).toEqual([...acked].sort().slice(-50));
    // The reader's copy from before the failover does not outlive it: a write on the new master reaches it.
    await store.addMemory(quiet, 'assistant', 'after');
    await expect.poll(async () => (await reader.getHistory(quiet)).map((m) => m.content), { timeout: 2000, interval: 5 }).toEqual(['before', 'after']);
    await Promise.all([store.close(), other.close(), reader.close()]);
    await cluster.startNode(master.port);
  }, 60_000);

  it('every node and PostgreSQL down: reads return the last history this process knew plus its writes since', async () => {
    const pg = await FaultProxy.start(databaseUrl());
    const store = new TieredStore({
      logger,
      probeIntervalMs: 100,
      redis: new RedisAdapter({ nodes: nodes(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: pg.url(databaseUrl()), schema: names.schema }),
    });
    const user = 'cluster_stale';
    const known = Array.from({ length: 20 }, (_, i) => `m${i}`);
    for (const text of known) await store.addMemory(user, 'user', text);
    const texts = async () => (await store.getHistory(user)).map((m) => m.content);
    await expect.poll(() => l1HitsOfRead(store, user, known), { timeout: 5000 }).toBe(1);
    await pg.refuse();
    const ports = cluster.nodes.map((n) => n.port);
    for (const port of ports) await cluster.stopNode(port);
    await store.addMemory(user, 'user', 'out');
    await expect.poll(() => store.health(), { timeout: 10_000 }).toMatchObject({ redis: 'down', postgres: 'down' });
    expect(await texts()).toEqual([...known, 'out']);
    expect(store.stats().l1.staleServes).toBeGreaterThan(0);

    // Back up: the write made during the outage reaches both tiers, and every reader sees the whole history.
    for (const port of ports) await cluster.startNode(port, { waitForCluster: false });
    await pg.pass();
    await expect.poll(() => store.health(), { timeout: 30_000 }).toMatchObject({ redis: 'up', postgres: 'up' });
    const other = clusterStore();
    await expect.poll(async () => (await other.getHistory(user)).map((m) => m.content), { timeout: 10_000 }).toEqual([...known, 'out']);
    expect(await texts()).toEqual([...known, 'out']);
    await Promise.all([store.close(), other.close()]);
    await pg.close();
  }, 90_000);
});
