import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresAdapter, type TieredStore } from '../src/index.js';
import { decodeOp } from '../src/model/codec.js';
import { OutageRig } from './helpers/outage.js';
import { databaseUrl } from './helpers/services.js';
import { durableConfig } from './helpers/stores.js';

// A journal replayed again (an acknowledgement lost, a syncer that died after the commit, two
// syncers racing), in order and backwards: the version-2 writes in it change nothing the second
// time. A removed message never comes back, an older edit never beats a newer one.

let rig: OutageRig | undefined;
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
  await rig?.close();
  rig = undefined;
});

async function snapshot(store: TieredStore, user: string) {
  const history: Record<string, string[]> = {};
  for (const thread of ['main', 't', 'gone', 'c']) history[thread] = (await store.getHistory(user, { thread, limit: 100 })).map((m) => m.content);
  const threads = (await store.listThreads(user)).threads.map((t) => [t.id, t.title, t.messages]);
  return { history, threads };
}

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it('replaying a journal of every new kind of write, again and backwards, changes nothing', async () => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10 });
    const s = rig.store;
    const user = 'u0';
    const m1 = await s.addMemory(user, 'user', 'm1');
    const m2 = await s.addMemory(user, 'assistant', 'm2');
    const t1 = await s.addMemory(user, 'user', 't1', { thread: 't' });
    await s.addMemory(user, 'user', 't2', { thread: 't' });
    await s.addMemory(user, 'user', 'g1', { thread: 'gone' });
    await s.addMemory(user, 'user', 'c1', { thread: 'c' });
    for (const thread of ['main', 't', 'gone', 'c']) await s.getHistory(user, { thread });

    await rig.pg.refuse();
    await s.updateMessage(user, m2.id, { content: 'm2 first edit' });
    await s.updateMessage(user, m2.id, { content: 'm2 second edit' });
    await s.deleteMessage(user, m1.id);
    await s.truncateAfter(user, t1.id);
    await s.addMemory(user, 'user', 't3', { thread: 't' });
    await s.setThreadTitle(user, 't', 'old title');
    await s.setThreadTitle(user, 't', 'Title');
    await s.deleteThread(user, 'gone');
    await s.clearHistory(user, { thread: 'c' });
    const draft = await s.startDraft(user, 'assistant');
    draft.update('partial');
    await draft.abort();

    const redis = new Redis(rig.redisDirect);
    cleanup.push(() => redis.quit());
    const journalKey = `${rig.names.keyPrefix}:{${user}}:j`;
    const entries = await redis.lrange(journalKey, 0, -1);
    expect(entries.map((e) => decodeOp(user, e).kind)).toEqual(expect.arrayContaining(['edit', 'cut', 'append', 'title', 'dropThread', 'clear']));

    await rig.pg.pass();
    await rig.recovered();
    const once = await snapshot(s, user);
    expect(once.history).toEqual({ main: ['m2 second edit', 'partial'], t: ['t1', 't3'], gone: [], c: [] });
    expect(once.threads).toEqual(expect.arrayContaining([['t', 'Title', 2]]));

    // The whole journal again, through Redis: a new process's backstop finds it and syncs it.
    await redis.rpush(journalKey, ...entries);
    const again = rig.anotherProcess({ historyLimit: 10 });
    cleanup.push(() => again.close());
    await expect.poll(async () => (await again.syncNow()).pending, { timeout: 10_000 }).toBe(0);
    expect(await redis.llen(journalKey)).toBe(0);

    // And backwards, straight into PostgreSQL.
    const pg = new PostgresAdapter({ url: databaseUrl(), schema: rig.names.schema });
    pg.bind(durableConfig(10));
    cleanup.push(() => pg.close());
    await pg.write(entries.map((e) => decodeOp(user, e)).reverse());

    for (const store of [s, again]) expect(await snapshot(store, user)).toEqual(once);
    const rows = await rig.sql`select content from ${rig.sql(`${rig.names.schema}.messages`)} where user_id = ${user} order by id`;
    expect(rows.map((r) => r.content)).toEqual(['m2 second edit', 't1', 't3', 'partial']);
  });
});
