import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, type TieredStore } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore, TOPOLOGIES } from './helpers/stores.js';

const names = isolation('conversations');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

let n = 0;
const newUser = () => `conv_${n++}_${Date.now()}`;
const texts = async (store: TieredStore, user: string, thread?: string, limit?: number) =>
  (await store.getHistory(user, { ...(thread === undefined ? {} : { thread }), ...(limit === undefined ? {} : { limit }) })).map((m) => m.content);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(TOPOLOGIES)('threads, messages by id and drafts (%s)', (topology) => {
  const store = makeStore(topology, names, { historyLimit: 5, draftFlushMs: 20 });
  afterAll(() => store.close());
  // Reads must agree before and after the syncer moved everything (write-behind holds it in Redis until then).
  const bothSidesOfSync = async (check: () => Promise<void>) => {
    await check();
    await store.syncNow();
    await check();
  };

  it('keeps threads apart; each message names its thread; omitted thread is main', async () => {
    const user = newUser();
    const m = await store.addMemory(user, 'user', 'in main');
    const t = await store.addMemory(user, 'user', 'in topic', { thread: 'topic-42' });
    expect(m.thread).toBe('main');
    expect(t.thread).toBe('topic-42');
    await store.addMemory(user, 'assistant', 'topic answer', { thread: 'topic-42' });
    await bothSidesOfSync(async () => {
      expect(await texts(store, user)).toEqual(['in main']);
      expect(await texts(store, user, 'main')).toEqual(['in main']);
      expect(await texts(store, user, 'topic-42')).toEqual(['in topic', 'topic answer']);
      expect((await store.getHistory(user, { thread: 'topic-42' })).every((x) => x.thread === 'topic-42')).toBe(true);
    });
    await store.clearHistory(user, { thread: 'topic-42' });
    await bothSidesOfSync(async () => {
      expect(await texts(store, user, 'topic-42')).toEqual([]);
      expect(await texts(store, user)).toEqual(['in main']);
    });
  });

  it('lists threads most recently active first, with titles, counts and a cursor', async () => {
    const user = newUser();
    for (const thread of ['a', 'b', 'c']) {
      await store.addMemory(user, 'user', `${thread}1`, { thread });
      await sleep(3);
    }
    await store.addMemory(user, 'user', 'a2', { thread: 'a' });
    await sleep(3);
    await store.setThreadTitle(user, 'b', 'Haircut on Friday');
    await bothSidesOfSync(async () => {
      const page = await store.listThreads(user);
      expect(page.threads.map((t) => [t.id, t.title, t.messages])).toEqual([
        ['b', 'Haircut on Friday', 1],
        ['a', null, 2],
        ['c', null, 1],
      ]);
      expect(page.cursor).toBeNull();
      expect(page.threads[0]?.createdAt).toBeInstanceOf(Date);
      expect(page.threads[0]!.updatedAt.getTime()).toBeGreaterThanOrEqual(page.threads[0]!.createdAt.getTime());
    });
    await store.syncNow();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await store.listThreads(user, { limit: 1, cursor });
      seen.push(...page.threads.map((t) => t.id));
      cursor = page.cursor;
    } while (cursor !== null && seen.length < 10);
    expect(seen).toEqual(['b', 'a', 'c']);
    await store.deleteThread(user, 'b');
    await bothSidesOfSync(async () => {
      expect((await store.listThreads(user)).threads.map((t) => t.id)).toEqual(['a', 'c']);
      expect(await texts(store, user, 'b')).toEqual([]);
    });
  });

  it('gets, updates, deletes and truncates messages by id', async () => {
    const user = newUser();
    const q = await store.addMemory(user, 'user', 'question');
    const a = await store.addMemory(user, 'assistant', 'answer', { meta: { model: 'x' } });
    const f = await store.addMemory(user, 'user', 'follow-up');
    const other = await store.addMemory(user, 'user', 'elsewhere', { thread: 'other' });
    expect(await store.getMessage(user, a.id)).toMatchObject({ id: a.id, content: 'answer', thread: 'main', meta: { model: 'x' } });
    expect((await store.getMessage(user, other.id))?.thread).toBe('other');

    const updated = await store.updateMessage(user, a.id, { content: 'better answer' });
    expect(updated).toMatchObject({ id: a.id, content: 'better answer', meta: { model: 'x' }, thread: 'main' });
    expect(updated?.updatedAt).toBeInstanceOf(Date);
    expect(await store.updateMessage(user, a.id, { meta: null })).not.toHaveProperty('meta');
    await bothSidesOfSync(async () => {
      expect(await texts(store, user)).toEqual(['question', 'better answer', 'follow-up']);
      const read = await store.getMessage(user, a.id);
      expect(read).toMatchObject({ content: 'better answer' });
      expect(read?.meta).toBeUndefined();
      expect(read?.updatedAt).toBeInstanceOf(Date);
    });

    expect(await store.truncateAfter(user, q.id)).toBe(2);
    await bothSidesOfSync(async () => {
      expect(await texts(store, user)).toEqual(['question']);
      expect(await store.getMessage(user, f.id)).toBeNull();
      expect(await texts(store, user, 'other')).toEqual(['elsewhere']);
    });
    await store.addMemory(user, 'assistant', 'regenerated');
    expect(await store.deleteMessage(user, q.id)).toBe(true);
    expect(await store.deleteMessage(user, q.id)).toBe(false);
    await bothSidesOfSync(async () => {
      expect(await texts(store, user)).toEqual(['regenerated']);
      expect(await store.getMessage(user, q.id)).toBeNull();
    });
    // Ids that do not exist: null / false / 0, not errors.
    const ghost = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
    expect(await store.getMessage(user, ghost)).toBeNull();
    expect(await store.updateMessage(user, ghost, { content: 'x' })).toBeNull();
    expect(await store.deleteMessage(user, ghost)).toBe(false);
    expect(await store.truncateAfter(user, ghost)).toBe(0);
  });

  it('streams a draft: visible at once, grows, finishes durable without a status', async () => {
    const user = newUser();
    const draft = await store.startDraft(user, 'assistant', { thread: 'chat', meta: { model: 'm' } });
    const streaming = await store.getHistory(user, { thread: 'chat' });
    expect(streaming).toMatchObject([{ id: draft.id, role: 'assistant', content: '', status: 'streaming', thread: 'chat' }]);
    draft.update('Hel');
    draft.update('Hello');
    const message = await draft.finish('Hello, world');
    expect(message).toMatchObject({ id: draft.id, content: 'Hello, world', meta: { model: 'm' }, thread: 'chat' });
    expect(message.status).toBeUndefined();
    await bothSidesOfSync(async () => {
      const [stored] = await store.getHistory(user, { thread: 'chat' });
      expect(stored).toMatchObject({ id: draft.id, content: 'Hello, world' });
      expect(stored?.status).toBeUndefined();
    });
    expect(() => draft.update('more')).toThrow(expect.objectContaining({ code: ErrorCode.DRAFT_CLOSED }));
    await expect(draft.finish()).rejects.toMatchObject({ code: ErrorCode.DRAFT_CLOSED });

    const cut = await store.startDraft(user, 'assistant');
    cut.update('partial answ');
    const aborted = await cut.abort();
    expect(aborted).toMatchObject({ content: 'partial answ', status: 'aborted' });
    await bothSidesOfSync(async () => expect(await store.getMessage(user, cut.id)).toMatchObject({ content: 'partial answ', status: 'aborted' }));
  });

  it('deleteUser erases every thread and title', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'a', { thread: 't1' });
    await store.addMemory(user, 'user', 'b');
    await store.setThreadTitle(user, 't1', 'Title');
    await store.deleteUser(user);
    await bothSidesOfSync(async () => {
      expect(await texts(store, user, 't1')).toEqual([]);
      expect(await texts(store, user)).toEqual([]);
      expect((await store.listThreads(user)).threads).toEqual([]);
    });
  });

  it('refuses bad input with a code and writes nothing', async () => {
    const user = newUser();
    const m = await store.addMemory(user, 'user', 'kept');
    const cases: [() => Promise<unknown>, string][] = [
      [() => store.addMemory(user, 'user', 'x', { thread: 'bad thread!' }), ErrorCode.INVALID_THREAD],
      [() => store.addMemory(user, 'user', 'x', { thread: '' }), ErrorCode.INVALID_THREAD],
      [() => store.addMemory(user, 'user', 'x', { thread: 'x'.repeat(129) }), ErrorCode.INVALID_THREAD],
      [() => store.getHistory(user, { thread: 'a/b' }), ErrorCode.INVALID_THREAD],
      [() => store.clearHistory(user, { thread: 7 as unknown as string }), ErrorCode.INVALID_THREAD],
      [() => store.deleteThread(user, '../main'), ErrorCode.INVALID_THREAD],
      [() => store.getMessage(user, 'not-an-id'), ErrorCode.INVALID_MESSAGE_ID],
      [() => store.updateMessage(user, m.id.toLowerCase(), { content: 'x' }), ErrorCode.INVALID_MESSAGE_ID],
      [() => store.deleteMessage(user, 42 as unknown as string), ErrorCode.INVALID_MESSAGE_ID],
      [() => store.truncateAfter(user, `${m.id}0`), ErrorCode.INVALID_MESSAGE_ID],
      [() => store.setThreadTitle(user, 'main', 'x'.repeat(257)), ErrorCode.INVALID_TITLE],
      [() => store.setThreadTitle(user, 'main', 5 as unknown as string), ErrorCode.INVALID_TITLE],
      [() => store.updateMessage(user, m.id, { content: 5 as unknown as string }), ErrorCode.INVALID_CONTENT],
      [() => store.startDraft(user, 'assistant', { thread: 'no spaces' }), ErrorCode.INVALID_THREAD],
    ];
    for (const [call, code] of cases) await expect(call()).rejects.toMatchObject({ code });
    await store.setThreadTitle(user, 'main', 'x'.repeat(256));
    expect(await texts(store, user)).toEqual(['kept']);
    expect((await store.listThreads(user)).threads.map((t) => [t.id, t.messages])).toEqual([['main', 1]]);
  });
});

it('Redis alone: a delete leaves its thread as recent as the newest message it keeps', async () => {
  const store = makeStore('redis only', names, { l1: false });
  try {
    const user = newUser();
    const first = await store.addMemory(user, 'user', 'first', { thread: 'a' });
    await sleep(5);
    const second = await store.addMemory(user, 'user', 'second', { thread: 'a' });
    expect((await store.listThreads(user)).threads[0]?.updatedAt).toEqual(second.createdAt);
    await store.deleteMessage(user, second.id);
    const [a] = (await store.listThreads(user)).threads;
    expect(a).toMatchObject({ id: 'a', messages: 1 });
    expect(a?.updatedAt).toEqual(first.createdAt);
  } finally {
    await store.close();
  }
});
