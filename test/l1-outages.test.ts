import { afterEach, expect, it } from 'vitest';
import type { TieredStore } from '../src/index.js';
import { OutageRig } from './helpers/outage.js';

// Issue 15, L1 through outages of this process's servers. Stale-if-error: with Redis and
// PostgreSQL both unreachable, a read returns the last history this process knew plus the writes
// made since (here and during the outage), never less than the RAM tier alone would give.

let rig: OutageRig | undefined;
let other: TieredStore | undefined;
afterEach(async () => {
  await other?.close();
  other = undefined;
  await rig?.close();
  rig = undefined;
});

const texts = async (store: TieredStore, user: string, limit?: number) =>
  (await store.getHistory(user, limit === undefined ? {} : { limit })).map((m) => m.content);
const range = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

async function bothDown(r: OutageRig): Promise<void> {
  await r.redis.refuse();
  await r.pg.refuse();
}

it('40 messages read, both servers down: getHistory returns all 40 plus the outage writes, and a clear made then applies', async () => {
  rig = await OutageRig.start();
  other = rig.anotherProcess();
  for (const text of range('m', 40)) await other.addMemory('s1', 'user', text);
  expect(await texts(rig.store, 's1')).toEqual(range('m', 40));
  await bothDown(rig);
  for (const text of range('out', 10)) await rig.store.addMemory('s1', 'user', text);
  expect(rig.store.health()).toMatchObject({ redis: 'down', postgres: 'down' });
  expect(await texts(rig.store, 's1')).toEqual([...range('m', 40), ...range('out', 10)]);
  expect(await texts(rig.store, 's1', 5)).toEqual(range('out', 5).map((_, i) => `out${i + 5}`));
  expect(rig.store.stats().l1.staleServes).toBeGreaterThanOrEqual(2);
  // A clear during the outage removes the known messages too.
  await rig.store.clearHistory('s1');
  await rig.store.addMemory('s1', 'user', 'after-clear');
  expect(await texts(rig.store, 's1')).toEqual(['after-clear']);
  await rig.redis.pass();
  await rig.pg.pass();
  await rig.recovered();
  expect(await texts(rig.store, 's1')).toEqual(['after-clear']);
  expect(await texts(other, 's1')).toEqual(['after-clear']);
});

it("the process's own edits, deletes and erasures made after the read are laid over the last-known copy", async () => {
  rig = await OutageRig.start();
  const store = rig.store;
  const ids: string[] = [];
  for (const text of range('m', 8)) ids.push((await store.addMemory('s2', 'user', text)).id);
  for (const text of range('e', 3)) await store.addMemory('s3', 'user', text);
  expect(await texts(store, 's2')).toEqual(range('m', 8));
  expect(await texts(store, 's3')).toEqual(range('e', 3));
  // Written while both are up, after the copy was made: they reach the servers, and the copy learns them.
  await store.updateMessage('s2', ids[1]!, { content: 'm1-edited' });
  await store.deleteMessage('s2', ids[2]!);
  await store.truncateAfter('s2', ids[6]!);
  await store.addMemory('s2', 'user', 'm8');
  await store.deleteUser('s3');
  await store.setUserPhone('s2', '+15550000001');
  await store.setBookingData('s2', { slot: 'known' });
  expect(await store.getUserPhone('s2')).toBe('+15550000001');
  expect(await store.getBookingData('s2')).toEqual({ slot: 'known' });
  await store.setBookingData('s2', { slot: 'changed after the read' });
  await bothDown(rig);
  await store.addMemory('s2', 'user', 'out');
  // Phone and booking as last known, with the write since (before: null, RAM held neither).
  expect(await store.getUserPhone('s2')).toBe('+15550000001');
  expect(await store.getBookingData('s2')).toEqual({ slot: 'changed after the read' });
  await store.setUserPhone('s2', '+15550000009');
  expect(await store.getUserPhone('s2')).toBe('+15550000009');
  expect(await texts(store, 's2')).toEqual(['m0', 'm1-edited', 'm3', 'm4', 'm5', 'm6', 'm8', 'out']);
  expect(await texts(store, 's3')).toEqual([]); // an erased user never comes back from a stale copy
});

it('a read longer than historyLimit is remembered too: 40 read with historyLimit 10, all 40 plus the outage writes', async () => {
  rig = await OutageRig.start({ historyLimit: 10 });
  other = rig.anotherProcess({ historyLimit: 10 });
  for (const text of range('m', 40)) await other.addMemory('s5', 'user', text);
  expect(await texts(rig.store, 's5', 40)).toEqual(range('m', 40));
  await bothDown(rig);
  for (const text of range('out', 3)) await rig.store.addMemory('s5', 'user', text);
  expect(await texts(rig.store, 's5', 100)).toEqual([...range('m', 40), ...range('out', 3)]);
  expect(await texts(rig.store, 's5')).toEqual([...range('m', 40).slice(-7), ...range('out', 3)]);
});

it('without L1 (l1: false) the same double outage gives only what RAM holds: the outage writes', async () => {
  rig = await OutageRig.start({ l1: false });
  other = rig.anotherProcess();
  for (const text of range('m', 40)) await other.addMemory('s4', 'user', text);
  expect(await texts(rig.store, 's4')).toHaveLength(40);
  await bothDown(rig);
  for (const text of range('out', 10)) await rig.store.addMemory('s4', 'user', text);
  expect(await texts(rig.store, 's4')).toEqual(range('out', 10));
  expect(rig.store.stats().l1).toMatchObject({ enabled: false, staleServes: 0 });
});

it('a store started while Redis was unreachable runs L1 once Redis is back (the feed keeps reconnecting)', async () => {
  rig = await OutageRig.start({}, { before: (redis) => redis.refuse() });
  await rig.store.addMemory('s6', 'user', 'a');
  expect(rig.store.health().redis).toBe('down');
  await rig.redis.pass();
  await expect.poll(() => rig!.store.health().redis, { timeout: 15_000 }).toBe('up');
  await expect
    .poll(
      async () => {
        expect(await texts(rig!.store, 's6')).toEqual(['a']);
        return rig!.store.stats().l1.hits;
      },
      { timeout: 15_000 },
    )
    .toBeGreaterThan(0);
});
