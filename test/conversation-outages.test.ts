import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, TieredStore } from '../src/index.js';
import { OutageRig } from './helpers/outage.js';

// Every kind of write of version 2 (threads, titles, edits, deletes, truncations, drafts) through
// real outages: each is journaled like an append, reaches PostgreSQL once when it is back, and
// every read afterwards (this process, another one, PostgreSQL itself) agrees with a reference
// store that saw the same calls without any fault.

let rig: OutageRig | undefined;
const stores: TieredStore[] = [];
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

const THREADS = ['main', 't', 'gone', 'c', 'new'];
type Outage = 'redis' | 'postgres' | 'both';

/** The same calls on the store under test and on a fault-free reference; ids by label, per store. */
class Twin {
  readonly ids = [new Map<string, string>(), new Map<string, string>()];
  constructor(readonly stores: [TieredStore, TieredStore]) {}

  async add(user: string, label: string, thread = 'main'): Promise<void> {
    for (const [i, store] of this.stores.entries()) this.ids[i]!.set(label, (await store.addMemory(user, 'user', label, { thread })).id);
  }

  async each(call: (store: TieredStore, id: (label: string) => string) => Promise<unknown>): Promise<void> {
    for (const [i, store] of this.stores.entries()) await call(store, (label) => this.ids[i]!.get(label)!);
  }
}

async function contents(store: TieredStore, user: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const thread of THREADS) out[thread] = (await store.getHistory(user, { thread, limit: 100 })).map((m) => m.content);
  return out;
}

/** By id: the reference (memory only) makes several calls within one millisecond, so its activity order has ties. */
async function threads(store: TieredStore, user: string): Promise<[string, string | null, number][]> {
  const list = (await store.listThreads(user)).threads.map((t): [string, string | null, number] => [t.id, t.title, t.messages]);
  return list.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it.each(['redis', 'postgres', 'both'] as Outage[])('%s down: every new kind of write lands once and every reader agrees after recovery', async (outage) => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    const reference = new TieredStore({ logger: false, historyLimit: 10 });
    stores.push(reference);
    const twin = new Twin([rig.store, reference]);
    const user = 'u0';
    for (const label of ['m1', 'm2', 'm3']) await twin.add(user, label);
    for (const label of ['t1', 't2', 't3']) await twin.add(user, label, 't');
    await twin.add(user, 'g1', 'gone');
    await twin.add(user, 'c1', 'c');
    await twin.each((s) => s.setThreadTitle(user, 't', 'T'));
    for (const thread of THREADS) await rig.store.getHistory(user, { thread }); // hot copies of every thread
    // Write-behind keeps what is not synced in Redis only: a Redis outage would hide it (documented).
    if (writeMode === 'write-behind' && outage === 'redis') await rig.store.syncNow();

    if (outage !== 'postgres') await rig.redis.refuse();
    if (outage !== 'redis') await rig.pg.refuse();

    await twin.add(user, 'm4');
    await twin.add(user, 'n1', 'new');
    await twin.each((s, id) => s.updateMessage(user, id('m4'), { content: 'm4 edited', meta: { edited: true } }));
    await twin.each(async (s) => {
      const draft = await s.startDraft(user, 'assistant', { thread: 'new' });
      draft.update('stream');
      draft.update('streamed');
      await draft.finish('streamed answer');
    });
    await twin.each((s) => s.setThreadTitle(user, 'new', 'New'));
    await twin.each((s) => s.deleteThread(user, 'gone'));
    await twin.each((s) => s.clearHistory(user, { thread: 'c' }));
    if (outage === 'both') {
      // Nothing reachable holds the older messages: the store says so rather than guess "no such message".
      const [s, id] = [rig.store, twin.ids[0]!];
      await expect(s.updateMessage(user, id.get('m2')!, { content: 'x' })).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
      await expect(s.deleteMessage(user, id.get('m1')!)).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
      await expect(s.truncateAfter(user, id.get('t1')!)).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    } else {
      await twin.each((s, id) => s.updateMessage(user, id('m2'), { content: 'm2 edited' }));
      await twin.each(async (s, id) => expect(await s.deleteMessage(user, id('m1'))).toBe(true));
      await twin.each(async (s, id) => expect(await s.truncateAfter(user, id('t1'))).toBe(2));
    }
    // With every server down, reads have only what this process wrote during the outage.
    if (outage !== 'both') expect(await contents(rig.store, user)).toEqual(await contents(reference, user));

    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    const expected = await contents(reference, user);
    expect(await contents(rig.store, user)).toEqual(expected);
    expect(await threads(rig.store, user)).toEqual(await threads(reference, user));
    const edited = await rig.store.getMessage(user, twin.ids[0]!.get('m4')!);
    expect(edited).toMatchObject({ content: 'm4 edited', meta: { edited: true } });
    expect(edited?.updatedAt).toBeInstanceOf(Date);

    // Another process, and PostgreSQL itself.
    const other = rig.anotherProcess({ historyLimit: 10 });
    stores.push(other);
    expect(await contents(other, user)).toEqual(expected);
    expect(await threads(other, user)).toEqual(await threads(reference, user));
    const table = rig.sql(`${rig.names.schema}.messages`);
    const rows = await rig.sql`select thread, content, status from ${table} where user_id = ${user} order by id`;
    for (const thread of THREADS) {
      expect(
        rows.filter((r) => r.thread === thread).map((r) => r.content),
        `PostgreSQL rows of thread ${thread}`,
      ).toEqual(expected[thread]);
    }
    expect(rows.filter((r) => r.status !== null)).toEqual([]);
    const [dup] = await rig.sql`select count(*) - count(distinct id) as d from ${table}`;
    expect(Number(dup?.d)).toBe(0);
  });
});
