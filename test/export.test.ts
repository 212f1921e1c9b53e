import postgres from 'postgres';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, type TieredStore, type UserExport } from '../src/index.js';
import { OutageRig } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, redisUrl, type Isolation } from './helpers/services.js';
import { isolation, makeStore, TOPOLOGIES } from './helpers/stores.js';

// Issue 14 (export): exportUser returns everything the store holds for a user, on every layout,
// pending writes included, every message of every thread (not just historyLimit).

const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 2 });
const stores: TieredStore[] = [];
const names: Isolation[] = [];
let rig: OutageRig | undefined;

afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const n of names.splice(0)) {
    await cleanupRedis(redisUrl(), n.keyPrefix).catch(() => {});
    await cleanupPostgres(databaseUrl(), n.schema).catch(() => {});
  }
});
afterAll(() => sql.end());

function fresh(name: string): Isolation {
  const n = isolation(`export_${name}`);
  names.push(n);
  return n;
}

/** A user with a long thread, a titled thread, an empty titled thread, an edit and a deletion. */
async function fill(store: TieredStore, user: string): Promise<void> {
  await store.setUserPhone(user, '+1 555 0100');
  await store.setBookingData(user, { room: 12, nights: 3 });
  await store.addEmailSubscriber(user);
  for (let i = 0; i < 30; i++) await store.addMemory(user, i % 2 ? 'assistant' : 'user', `main ${i}`);
  for (let i = 0; i < 3; i++) await store.addMemory(user, 'user', `side ${i}`, { thread: 'side', meta: { i } });
  await store.setThreadTitle(user, 'side', 'Side quest');
  await store.setThreadTitle(user, 'empty', 'Nothing yet');
  const [first, second] = await store.getHistory(user, { limit: 10_000 });
  await store.updateMessage(user, first!.id, { content: 'main 0 edited' });
  await store.deleteMessage(user, second!.id);
}

function check(exported: UserExport, user: string): void {
  expect(exported).toMatchObject({ userId: user, phone: '+15550100', booking: { room: 12, nights: 3 }, subscribed: true });
  expect(exported.exportedAt).toBeInstanceOf(Date);
  const byId = new Map(exported.threads.map((t) => [t.id, t]));
  expect([...byId.keys()].sort()).toEqual(['empty', 'main', 'side']);
  const main = byId.get('main')!;
  // Every message, not the newest historyLimit (10 here): 30 written, one deleted.
  expect(main.messages.map((m) => m.content)).toEqual(['main 0 edited', ...Array.from({ length: 28 }, (_, i) => `main ${i + 2}`)]);
  expect(main).toMatchObject({ title: null, summary: null });
  expect(byId.get('side')).toMatchObject({ title: 'Side quest', summary: null });
  expect(byId.get('side')!.messages.map((m) => [m.content, m.meta, m.thread])).toEqual([
    ['side 0', { i: 0 }, 'side'],
    ['side 1', { i: 1 }, 'side'],
    ['side 2', { i: 2 }, 'side'],
  ]);
  expect(byId.get('empty')).toMatchObject({ title: 'Nothing yet', messages: [] });
}

describe.each(TOPOLOGIES)('%s', (topology) => {
  it('exports phone, booking, subscription and every message of every thread, pending writes included', async () => {
    const n = fresh(topology);
    const store = makeStore(topology, n, { historyLimit: 10 });
    stores.push(store);
    await fill(store, 'u1');
    await store.addMemory('u2', 'user', 'someone else');
    // Write-behind: nothing has reached PostgreSQL yet; the export lays Redis's journal over it.
    if (topology === 'write-behind') {
      const [row] = await sql`select count(*)::int as n from ${sql(`${n.schema}.messages`)}`;
      expect(row?.n).toBe(0);
    }
    check(await store.exportUser('u1'), 'u1');
    expect(await store.exportUser('nobody')).toMatchObject({ userId: 'nobody', phone: null, booking: null, subscribed: false, threads: [] });
    if (topology === 'write-behind') {
      await store.syncNow();
      check(await store.exportUser('u1'), 'u1');
    }
  });
});

it('a thread longer than MAX_HISTORY_LIMIT (10,000) is exported whole, and the export is quick', async () => {
  const n = fresh('long');
  const store = makeStore('write-through', n);
  stores.push(store);
  await store.addMemory('big', 'user', 'warm up');
  // 10,500 rows straight into PostgreSQL (with their thread's count), as a long-lived bot would have them.
  const base = (await store.getHistory('big'))[0]!.id;
  await sql.begin(async (tx) => {
    await tx`
      insert into ${tx(`${n.schema}.messages`)} (user_id, id, thread, role, content, created_at)
      select 'big', ${base} || lpad(i::text, 6, '0'), 'main', 'user', 'm' || i, now() from generate_series(1, 10500) i`;
    await tx`update ${tx(`${n.schema}.threads`)} set messages = messages + 10500, last_id = ${base} || '010500' where user_id = 'big'`;
  });
  const started = performance.now();
  const exported = await store.exportUser('big');
  const ms = performance.now() - started;
  expect(exported.threads[0]!.messages).toHaveLength(10_501);
  expect(exported.threads[0]!.messages.at(-1)!.content).toBe('m10500');
  expect(ms).toBeLessThan(2000); // the bench measures the 200 ms target on an idle machine
});

describe('outages', () => {
  it('PostgreSQL down: the store says STORE_UNAVAILABLE; another process exports the writes journaled in Redis', async () => {
    rig = await OutageRig.start({ historyLimit: 5 });
    const user = 'u0';
    for (let i = 0; i < 8; i++) await rig.store.addMemory(user, 'user', `before ${i}`);
    await rig.store.setThreadTitle(user, 'side', 'Side');
    await rig.pg.refuse();
    for (let i = 0; i < 3; i++) await rig.store.addMemory(user, 'user', `during ${i}`);
    await rig.store.setUserPhone(user, '+15550199');
    await rig.store.addMemory(user, 'user', 'side during', { thread: 'side' });
    await expect.poll(() => rig!.store.health().postgres).toBe('down');
    await expect(rig.store.exportUser(user)).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });

    // Another process reaches PostgreSQL: the journal in Redis is laid over what PostgreSQL has.
    const other = rig.anotherProcess({ historyLimit: 5 });
    stores.push(other);
    const [row] = await rig.sql`select count(*)::int as n from ${rig.sql(`${rig.names.schema}.messages`)}`;
    expect(row?.n).toBe(8);
    const exported = await other.exportUser(user);
    expect(exported.phone).toBe('+15550199');
    const threads = Object.fromEntries(exported.threads.map((t) => [t.id, t.messages.map((m) => m.content)]));
    expect(threads.main).toEqual([...Array.from({ length: 8 }, (_, i) => `before ${i}`), 'during 0', 'during 1', 'during 2']);
    expect(threads.side).toEqual(['side during']);

    await rig.pg.pass();
    await rig.recovered();
    expect(await rig.store.exportUser(user)).toMatchObject({ phone: '+15550199', threads: exported.threads });
  });

  it('Redis down: STORE_UNAVAILABLE rather than an export that may miss what its journal holds', async () => {
    rig = await OutageRig.start({ writeMode: 'write-behind' });
    await rig.store.addMemory('u0', 'user', 'hello');
    await rig.redis.refuse();
    await rig.store.getHistory('u0').catch(() => {});
    await expect.poll(() => rig!.store.health().redis, { timeout: 10_000 }).toBe('down');
    await expect(rig.store.exportUser('u0')).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
  });
});
