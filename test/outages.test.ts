import { afterEach, describe, expect, it } from 'vitest';
import { MARGIN_MS, OutageRig, PG_TIMEOUT_MS, REDIS_TIMEOUT_MS } from './helpers/outage.js';
import { PrivateRedis } from './helpers/private-redis.js';
import { describeIfAble, missingRedisServer } from './helpers/run-registry.js';

// Guarantees 4, 5 and 6 with real faults: a TCP proxy refuses, cuts or hangs each server.

let rig: OutageRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

const skippedAfterDown = (r: OutageRig) => r.slowest((c) => c.afterDown);
const errors = (r: OutageRig) => r.calls.filter((c) => c.error !== undefined).map((c) => c.error);

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it('Redis down: writes go to PostgreSQL, and reads after Redis is back are complete and fresh', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    await rig.writeMany(6, 3, 'before');
    for (const user of ['u0', 'u1', 'u2']) await rig.store.getHistory(user); // hot copies exist
    await rig.redis.refuse();
    await rig.writeMany(12, 3, 'during');
    expect(rig.store.health().redis).toBe('down');
    const during = ['during0', 'during3', 'during6', 'during9'];
    // Write-behind's unsynced writes live in Redis, so while it is away a read has only the rest.
    const expected = writeMode === 'write-through' ? ['before0', 'before3', ...during] : expect.arrayContaining(during);
    expect((await rig.store.getHistory('u0')).map((m) => m.content)).toEqual(expected);
    await rig.redis.pass();
    await rig.recovered();
    await rig.writeMany(3, 3, 'after');
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
    expect(rig.slowest()).toBeLessThan(REDIS_TIMEOUT_MS + MARGIN_MS);
    expect(skippedAfterDown(rig)).toBeLessThan(REDIS_TIMEOUT_MS / 2);
    expect(rig.logs.filter((l) => l.startsWith('redis is down'))).toHaveLength(1);
  });

  it('PostgreSQL down: writes are journaled in Redis and reach PostgreSQL exactly once when it is back', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    await rig.writeMany(3, 3, 'before');
    for (const user of ['u0', 'u1', 'u2']) await rig.store.getHistory(user); // hot copies exist
    await rig.pg.refuse();
    await rig.writeMany(15, 3, 'during');
    await rig.store.setUserPhone('u1', '+79991234567');
    // Write-behind never touches PostgreSQL on a write; a read past the hot copy does.
    await rig.timed(() => rig!.store.getHistory('u0', { limit: 100 }));
    expect(rig.store.health()).toMatchObject({ postgres: 'down', redis: 'up' });
    expect(rig.store.health().pending).toBeGreaterThan(0);
    expect((await rig.store.getHistory('u2')).map((m) => m.content)).toEqual(['before2', 'during2', 'during5', 'during8', 'during11', 'during14']);
    await rig.pg.pass();
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    expect(await rig.verify(10)).toMatchObject({ duplicates: 0 });
    const [row] = await rig.sql`select phone from ${rig.sql(`${rig.names.schema}.users`)} where user_id = 'u1'`;
    expect(row?.phone).toBe('+79991234567');
    expect(rig.slowest()).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
    expect(skippedAfterDown(rig)).toBeLessThan(PG_TIMEOUT_MS / 2);
  });

  it('both down: writes are held in RAM and replayed to both when they return', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    await rig.writeMany(3, 3, 'before');
    await rig.store.getHistory('u0');
    await Promise.all([rig.redis.refuse(), rig.pg.refuse()]);
    await rig.writeMany(12, 3, 'during');
    await rig.store.deleteUser('u2');
    rig.acked.delete('u2');
    expect(rig.store.health()).toMatchObject({ redis: 'down', postgres: 'down' });
    expect((await rig.store.getHistory('u1')).map((m) => m.content)).toEqual(expect.arrayContaining(['during1', 'during10']));
    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
    const erased = await rig.sql`select count(*)::int as n from ${rig.sql(`${rig.names.schema}.messages`)} where user_id = 'u2'`;
    expect(erased[0]?.n).toBe(0);
    expect(await rig.store.getHistory('u2')).toEqual([]);
    expect(skippedAfterDown(rig)).toBeLessThan(REDIS_TIMEOUT_MS / 2);
  });

  it('Redis hanging: the first call waits at most its deadline, later calls skip it, and it comes back by itself', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    await rig.writeMany(3);
    await rig.redis.hang();
    await rig.writeMany(9, 3, 'during');
    await rig.timed(() => rig!.store.getHistory('u0'));
    expect(rig.store.health().redis).toBe('down');
    await rig.redis.pass();
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
    expect(rig.slowest()).toBeLessThan(REDIS_TIMEOUT_MS + MARGIN_MS);
    expect(skippedAfterDown(rig)).toBeLessThan(REDIS_TIMEOUT_MS / 2);
  });

  it('PostgreSQL hanging: the first call waits at most its deadline, the hung pool is replaced, nothing is lost', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    await rig.writeMany(3);
    await rig.pg.hang();
    await rig.writeMany(9, 3, 'during');
    for (const user of ['u0', 'u1']) await rig.timed(() => rig!.store.getHistory(user, { limit: 100 }));
    expect(rig.store.health().postgres).toBe('down');
    await rig.pg.pass();
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
    expect(rig.slowest()).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
    expect(skippedAfterDown(rig)).toBeLessThan(PG_TIMEOUT_MS / 2);
  });

  it('flapping: tiers dropping and returning over and over lose nothing and end fresh', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    for (let round = 0; round < 6; round++) {
      const proxy = round % 2 === 0 ? rig.redis : rig.pg;
      await (round % 3 === 0 ? proxy.cut() : proxy.refuse());
      await rig.writeMany(5, 4, `r${round}_`);
      await proxy.pass();
      await rig.writeMany(3, 4, `r${round}_up_`);
    }
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    expect(await rig.verify(10)).toMatchObject({ duplicates: 0 });
    expect(rig.slowest()).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
  });
});

describe('a connection that hung is replaced', () => {
  it('after a hang whose sockets never answer again, both tiers come back on fresh connections', async () => {
    rig = await OutageRig.start({ historyLimit: 10 });
    await rig.writeMany(3);
    await Promise.all(['u0', 'u1', 'u2', 'u0'].map((user) => rig!.store.getHistory(user, { limit: 100 }))); // both pool connections open
    const marked: string[] = [];
    rig.store.on('tierDown', ({ tier }) => marked.push(tier));
    await Promise.all([rig.redis.hang(), rig.pg.hang()]);
    // Concurrent calls, so every connection of the (two-connection) pool is stuck on the hang.
    await Promise.all(Array.from({ length: 6 }, (_, i) => rig!.write(`u${i % 3}`, `during${i}`)));
    // Both were marked down (a replaced pool's fresh connection may already have been probed back up).
    expect(marked.sort()).toEqual(expect.arrayContaining(['postgres', 'redis']));
    await Promise.all([rig.redis.pass({ keepHung: true }), rig.pg.pass({ keepHung: true })]);
    await rig.recovered();
    await rig.writeMany(3, 3, 'after');
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
  });
});

describeIfAble('Redis restarted empty (a private redis-server, killed and started again)', missingRedisServer(), () => {
  it('write-through: journaled writes survive even a Redis that forgot them (this process kept a copy); reads refill', async () => {
    const server = await PrivateRedis.start();
    try {
      rig = await OutageRig.start({ historyLimit: 10 }, { redisTarget: server.url });
      await rig.writeMany(4, 2, 'before');
      await rig.pg.refuse();
      await rig.writeMany(6, 2, 'during');
      await server.kill();
      await server.start();
      await rig.pg.pass();
      await rig.recovered();
      expect(errors(rig)).toEqual([]);
      expect(await rig.verify(10)).toMatchObject({ duplicates: 0 });
      expect(rig.logs.some((l) => l.includes('redis restarted'))).toBe(true);
    } finally {
      await rig?.close();
      rig = undefined;
      await server.stop();
    }
  });
});

describe('lifecycle under outages', () => {
  it('a tier down at start-up is not an error: the store starts on what it has and takes it up when it appears', async () => {
    rig = await OutageRig.start({ historyLimit: 10 }, { before: async (redis, pg) => void (await Promise.all([redis.refuse(), pg.hang()])) });
    await rig.writeMany(4, 2, 'cold start');
    expect(rig.store.health()).toMatchObject({ redis: 'down', postgres: 'down' });
    expect(rig.slowest()).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    expect(errors(rig)).toEqual([]);
    await rig.verify(10);
  });

  it('close({ timeoutMs }) flushes what waited for PostgreSQL, even right after the tiers return', async () => {
    rig = await OutageRig.start({ historyLimit: 10 });
    await rig.pg.refuse();
    await rig.writeMany(3, 1, 'journaled in redis');
    await rig.redis.refuse();
    await rig.writeMany(3, 1, 'held in ram');
    expect(rig.store.health().pending).toBeGreaterThanOrEqual(6);
    await Promise.all([rig.pg.pass(), rig.redis.pass()]);
    await rig.store.close({ timeoutMs: 5000 });
    const rows = await rig.sql`select id from ${rig.sql(`${rig.names.schema}.messages`)} where user_id = 'u0' order by id`;
    expect(rows.map((r) => r.id)).toEqual([...(rig.acked.get('u0') ?? [])].sort());
    expect(rows).toHaveLength(6);
  });
});
