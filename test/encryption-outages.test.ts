import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { TieredStore } from '../src/index.js';
import { encryption, rawPostgres, rawRedis } from './helpers/encryption.js';
import { OutageRig } from './helpers/outage.js';
import { databaseUrl } from './helpers/services.js';

// Encryption at rest through real outages and replays: a user's first sealed write may happen
// with PostgreSQL away (Redis makes and keeps the data key, the journal holds ciphertext), with
// Redis away (PostgreSQL makes its own), or with both away (RAM holds plaintext, in process memory
// only). After recovery every acknowledged write is in PostgreSQL once, sealed, and opens in
// this process and another; a journal replayed again changes nothing.

let rig: OutageRig | undefined;
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
  await rig?.close();
  rig = undefined;
});

type Outage = 'redis' | 'postgres' | 'both';

async function snapshot(store: TieredStore, user: string) {
  const history: Record<string, string[]> = {};
  for (const thread of ['main', 't']) history[thread] = (await store.getHistory(user, { thread, limit: 100 })).map((m) => m.content);
  const threads = (await store.listThreads(user)).threads.map((t) => [t.id, t.title, t.messages]);
  return { history, threads, phone: await store.getUserPhone(user), booking: await store.getBookingData(user) };
}

function noPlaintext(raw: string, where: string): void {
  expect(raw, where).not.toMatch(/SECRET|5551230000/);
}

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it.each(['redis', 'postgres', 'both'] as Outage[])(
    "%s down at a new user's first writes: each lands once, sealed, and opens everywhere after recovery",
    async (outage) => {
      rig = await OutageRig.start({ writeMode, historyLimit: 10, encryption: encryption() });
      const s = rig.store;
      await rig.write('warm', 'SECRET-warm');
      if (outage !== 'postgres') await rig.redis.refuse();
      if (outage !== 'redis') await rig.pg.refuse();
      // New users: their data keys are made during the outage.
      for (const user of ['n1', 'n2']) {
        await rig.write(user, `SECRET-${user}-1`);
        const second = await s.addMemory(user, 'assistant', `SECRET-${user}-2`, { meta: { k: 'SECRET-meta' } });
        rig.acked.set(user, [...(rig.acked.get(user) ?? []), second.id]);
        await s.updateMessage(user, second.id, { content: `SECRET-${user}-2 edited` });
        await s.setThreadTitle(user, 'main', `SECRET-${user}-title`);
        await s.setUserPhone(user, '+1 555 123 0000');
        await s.setBookingData(user, { what: 'SECRET-booking' });
      }
      const during = await snapshot(s, 'n1');
      expect(during.history).toEqual({ main: ['SECRET-n1-1', 'SECRET-n1-2 edited'], t: [] });
      if (outage !== 'redis') noPlaintext(await rawRedis(rig.redisDirect, rig.names.keyPrefix), 'Redis while PostgreSQL is away (the journal)');
      await rig.redis.pass();
      await rig.pg.pass();
      const { acked, stored, duplicates } = await rig.verify(10);
      expect({ stored, duplicates }).toEqual({ stored: acked, duplicates: 0 });
      noPlaintext(await rawPostgres(databaseUrl(), rig.names.schema), 'PostgreSQL');
      noPlaintext(await rawRedis(rig.redisDirect, rig.names.keyPrefix), 'Redis');
      const other = rig.anotherProcess({ historyLimit: 10, encryption: encryption() });
      cleanup.push(() => other.close());
      for (const user of ['n1', 'n2']) {
        const want = {
          history: { main: [`SECRET-${user}-1`, `SECRET-${user}-2 edited`], t: [] },
          threads: [['main', `SECRET-${user}-title`, 2]],
          phone: '+15551230000',
          booking: { what: 'SECRET-booking' },
        };
        expect(await snapshot(s, user)).toEqual(want);
        expect(await snapshot(other, user)).toEqual(want);
      }
      expect(s.deadLetters()).toEqual([]);
    },
    60_000,
  );

  it('a sealed journal replayed again by another process changes nothing', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10, encryption: encryption() });
    const s = rig.store;
    const user = 'u0';
    const m1 = await s.addMemory(user, 'user', 'SECRET-m1');
    await s.getHistory(user);
    await rig.pg.refuse();
    await s.updateMessage(user, m1.id, { content: 'SECRET-m1 edited' });
    await s.addMemory(user, 'user', 'SECRET-t1', { thread: 't' });
    await s.setThreadTitle(user, 't', 'SECRET-title');
    await s.setUserPhone(user, '+15551230000');
    const redis = new Redis(rig.redisDirect);
    cleanup.push(() => redis.quit());
    const journalKey = `${rig.names.keyPrefix}:{${user}}:j`;
    const entries = await redis.lrange(journalKey, 0, -1);
    expect(entries.length).toBeGreaterThanOrEqual(4);
    noPlaintext(entries.join('\n'), 'the journal');
    await rig.pg.pass();
    await rig.recovered();
    const once = await snapshot(s, user);
    expect(once.history).toEqual({ main: ['SECRET-m1 edited'], t: ['SECRET-t1'] });
    await redis.rpush(journalKey, ...entries);
    const again = rig.anotherProcess({ historyLimit: 10, encryption: encryption() });
    cleanup.push(() => again.close());
    await expect.poll(async () => (await again.syncNow()).pending, { timeout: 10_000 }).toBe(0);
    expect(again.deadLetters()).toEqual([]);
    for (const store of [s, again]) expect(await snapshot(store, user)).toEqual(once);
    const [row] = await rig.sql`select count(*)::int as n from ${rig.sql(`${rig.names.schema}.messages`)} where user_id = ${user}`;
    expect(row?.n).toBe(2);
    noPlaintext(await rawPostgres(databaseUrl(), rig.names.schema), 'PostgreSQL');
  }, 60_000);
});

it('a process without the keys leaves sealed journal entries where they are (moved as they are they would not open); one with them moves them', async () => {
  rig = await OutageRig.start({ writeMode: 'write-behind', encryption: encryption() });
  await rig.pg.refuse();
  await rig.store.addMemory('u', 'user', 'SECRET-journaled');
  await rig.store.close({ timeoutMs: 1000 }); // PostgreSQL away: the write stays in Redis's journal
  await rig.pg.pass();
  const keyless = rig.anotherProcess();
  cleanup.push(() => keyless.close());
  expect((await keyless.syncNow()).pending).toBeGreaterThan(0);
  const [row] = await rig.sql`select count(*)::int as n from ${rig.sql(`${rig.names.schema}.messages`)}`;
  expect(row?.n).toBe(0);
  const keyed = rig.anotherProcess({ encryption: encryption() });
  cleanup.push(() => keyed.close());
  await expect.poll(async () => (await keyed.syncNow()).pending, { timeout: 10_000 }).toBe(0);
  const cold = rig.anotherProcess({ encryption: encryption() });
  cleanup.push(() => cold.close());
  expect((await cold.getHistory('u')).map((m) => m.content)).toEqual(['SECRET-journaled']);
  noPlaintext(await rawPostgres(databaseUrl(), rig.names.schema), 'PostgreSQL');
}, 60_000);

it.each(['postgres', 'both', 'redis'] as const)(
  "deleteUser with %s down destroys the user's data keys in every tier once it lands",
  async (outage) => {
    rig = await OutageRig.start({ historyLimit: 10, encryption: encryption() });
    const s = rig.store;
    await s.addMemory('gone', 'user', 'SECRET-before');
    await s.setUserPhone('gone', '+15551230000');
    await s.getHistory('gone');
    if (outage !== 'redis') await rig.pg.refuse();
    if (outage !== 'postgres') await rig.redis.refuse();
    await s.deleteUser('gone');
    await s.addMemory('gone', 'user', 'SECRET-after');
    await rig.redis.pass();
    await rig.pg.pass();
    await rig.recovered();
    const pgKeys = await rig.sql`select key_id, destroyed_by from ${rig.sql(`${rig.names.schema}.data_keys`)} where user_id = 'gone' order by key_id`;
    const redis = new Redis(rig.redisDirect);
    cleanup.push(() => redis.quit());
    const redisKeys = async () => Object.values(await redis.hgetall(`${rig?.names.keyPrefix}:{gone}:k`)).map((v) => JSON.parse(v) as { x?: string });
    // Every key made before the delete is destroyed; the write after it has a live key of its own.
    expect(pgKeys.filter((k) => k.destroyed_by === null)).toHaveLength(1);
    expect(pgKeys.length).toBeGreaterThanOrEqual(1);
    await expect.poll(async () => (await redisKeys()).some((k) => k.x !== undefined), { timeout: 10_000 }).toBe(true);
    const other = rig.anotherProcess({ encryption: encryption() });
    cleanup.push(() => other.close());
    expect((await other.getHistory('gone')).map((m) => m.content)).toEqual(['SECRET-after']);
    expect(await other.getUserPhone('gone')).toBeNull();
  },
  60_000,
);
