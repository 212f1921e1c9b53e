import { expect, type TestContext } from 'vitest';
import { isMiss, type HistoryRead, type StorageAdapter, type ThreadRecord } from '../adapters/contract.js';
import type { CacheAdapter } from '../cache/contract.js';
import type { Message } from '../types.js';
import { expectHit, expectMiss } from './cache.js';
import { after, type AppendOp, type EditOp, type Op, type SummaryOp } from '../model/ops.js';
import type { ContractContext } from './context.js';
import { defaultTokens } from '../model/budget.js';

async function history(adapter: StorageAdapter, user: string, thread: string, limit = 100): Promise<HistoryRead> {
  const read = await adapter.readHistory(user, limit, { thread });
  if (isMiss(read)) throw new Error(`${adapter.name} answered a miss in the durable role`);
  return read;
}

async function texts(adapter: StorageAdapter, user: string, thread = 'main'): Promise<string[]> {
  return (await history(adapter, user, thread)).messages.map((m) => m.content);
}

async function allThreads(adapter: StorageAdapter, user: string, pageSize = 100): Promise<ThreadRecord[]> {
  const out: ThreadRecord[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await adapter.listThreads(user, pageSize, cursor);
    out.push(...page.threads);
    cursor = page.cursor;
    if (cursor === null) return out;
  }
  throw new Error('listThreads never returned a null cursor');
}

/**
 * Version 2 of the durable contract: threads, messages by id, edits, cuts (deleteMessage,
 * truncateAfter), titles and dropped threads. Each op is idempotent and a removal holds against
 * replays, whatever the order they arrive in.
 */
export function conversationTests(c: ContractContext): void {
  const w = <A extends StorageAdapter>(test: (adapter: A) => Promise<void>) => c.withAdapter<A>(test, 'durable');
  const edit = (target: AppendOp, content: string, extra: Partial<EditOp> = {}): EditOp => ({
    kind: 'edit',
    user: target.user,
    id: c.id(),
    thread: target.thread,
    target: target.id,
    content,
    ...extra,
  });

  c.it(
    'keeps threads apart: each read returns its own messages, each message names its thread',
    w(async (adapter) => {
      const u = c.user();
      await adapter.write([c.append(u, 'm1'), c.append(u, 't1', undefined, 'topic-42'), c.append(u, 'm2')]);
      await adapter.write([c.append(u, 't2', undefined, 'topic-42')]);
      expect(await texts(adapter, u)).toEqual(['m1', 'm2']);
      expect(await texts(adapter, u, 'topic-42')).toEqual(['t1', 't2']);
      expect((await history(adapter, u, 'topic-42')).messages.map((m) => m.thread)).toEqual(['topic-42', 'topic-42']);
      expect((await history(adapter, u, 'main')).messages.map((m) => m.thread)).toEqual(['main', 'main']);
      expect((await history(adapter, u, 'topic-42', 1)).messages.map((m) => m.content)).toEqual(['t2']);
      expect(await texts(adapter, u, 'other')).toEqual([]);
    }),
  );

  c.it(
    'clears one thread below a floor that replays cannot cross, and leaves the others',
    w(async (adapter) => {
      const u = c.user();
      const old = c.append(u, 'old', undefined, 'a');
      const kept = c.append(u, 'kept in b', undefined, 'b');
      const clear: Op = { kind: 'clear', user: u, id: c.id(), thread: 'a' };
      const fresh = c.append(u, 'fresh', undefined, 'a');
      await adapter.write([old, kept, clear, fresh]);
      await adapter.write([old, kept]);
      expect(await texts(adapter, u, 'a')).toEqual(['fresh']);
      expect(await texts(adapter, u, 'b')).toEqual(['kept in b']);
      expect((await history(adapter, u, 'a')).floor).toBe(clear.id);
    }),
  );

  c.it(
    'finds a message by id in any thread; null for an id it does not hold',
    w(async (adapter) => {
      const u = c.user();
      const a = c.append(u, 'in main');
      const b = { ...c.append(u, 'in topic', undefined, 'topic'), meta: { x: 1 } };
      await adapter.write([a, b]);
      expect(await adapter.readMessage(u, b.id)).toEqual({
        id: b.id,
        role: 'user',
        content: 'in topic',
        createdAt: new Date(b.createdAt),
        thread: 'topic',
        meta: { x: 1 },
        tokens: defaultTokens(b),
      });
      expect((await adapter.readMessage(u, a.id))?.thread).toBe('main');
      expect(await adapter.readMessage(u, c.id())).toBeNull();
      expect(await adapter.readMessage(c.user(), a.id)).toBeNull();
    }),
  );

  c.it(
    'edits a message in place: the newest edit wins whatever the order, replays change nothing',
    w(async (adapter) => {
      const u = c.user();
      const before = c.append(u, 'before', undefined, 'topic');
      const m = c.append(u, 'original', undefined, 'topic');
      await adapter.write([before, m]);
      const older = edit(m, 'older edit', { meta: { n: 1 } });
      const newer = edit(m, 'newer edit', { updatedAt: Date.UTC(2030, 0, 1) });
      await adapter.write([newer]);
      await adapter.write([older]);
      await adapter.write([newer, older]);
      const read = await adapter.readMessage(u, m.id);
      expect(read).toMatchObject({ id: m.id, content: 'newer edit', thread: 'topic', updatedAt: new Date(Date.UTC(2030, 0, 1)) });
      expect(read?.meta).toBeUndefined();
      expect(await texts(adapter, u, 'topic')).toEqual(['before', 'newer edit']);
      // A replayed append does not undo the edit.
      await adapter.write([m]);
      expect(await texts(adapter, u, 'topic')).toEqual(['before', 'newer edit']);
      // An edit of a message that is not there writes nothing.
      await adapter.write([{ ...edit(m, 'ghost'), target: c.id() }]);
      expect(await texts(adapter, u, 'topic')).toEqual(['before', 'newer edit']);
    }),
  );

  c.it(
    'keeps a draft status until an edit completes or aborts it',
    w(async (adapter) => {
      const u = c.user();
      const draft: AppendOp = { ...c.append(u, ''), status: 'streaming', role: 'assistant' };
      await adapter.write([draft]);
      expect((await adapter.readMessage(u, draft.id))?.status).toBe('streaming');
      await adapter.write([edit(draft, 'partial', { status: 'streaming' })]);
      expect(await adapter.readMessage(u, draft.id)).toMatchObject({ content: 'partial', status: 'streaming' });
      await adapter.write([edit(draft, 'final answer')]);
      const done = await adapter.readMessage(u, draft.id);
      expect(done?.content).toBe('final answer');
      expect(done?.status).toBeUndefined();
      expect(done?.updatedAt).toBeUndefined();
      const aborted: AppendOp = { ...c.append(u, ''), status: 'streaming' };
      await adapter.write([aborted, edit(aborted, 'cut off', { status: 'aborted' })]);
      expect(await adapter.readMessage(u, aborted.id)).toMatchObject({ content: 'cut off', status: 'aborted' });
    }),
  );

  c.it(
    'deletes one message for good: a replay of its append never brings it back',
    w(async (adapter) => {
      const u = c.user();
      const [a, b, x] = [c.append(u, 'a'), c.append(u, 'b'), c.append(u, 'x', undefined, 'other')];
      await adapter.write([a, b, x]);
      const cut: Op = { kind: 'cut', user: u, id: c.id(), thread: 'main', from: a.id, to: a.id };
      await adapter.write([cut]);
      await adapter.write([a, cut]);
      expect(await texts(adapter, u)).toEqual(['b']);
      expect(await texts(adapter, u, 'other')).toEqual(['x']);
      expect(await adapter.readMessage(u, a.id)).toBeNull();
      // A cut that arrives before the append it removes still holds.
      const late = c.append(u, 'late');
      await adapter.write([{ kind: 'cut', user: u, id: c.id(), thread: 'main', from: late.id, to: late.id }]);
      await adapter.write([late]);
      expect(await texts(adapter, u)).toEqual(['b']);
      // An adapter that reports its cuts (they filter a journal laid over the read) reports each range whole, in order.
      const { cuts } = await history(adapter, u, 'main');
      if (cuts !== undefined)
        expect(cuts).toEqual([
          [a.id, a.id],
          [late.id, late.id],
        ]);
    }),
  );

  c.it(
    'truncates a thread after a message: newer ones go for good, later appends and other threads stay',
    w(async (adapter) => {
      const u = c.user();
      const [a, b, cc] = [c.append(u, 'a', undefined, 't'), c.append(u, 'b', undefined, 't'), c.append(u, 'c', undefined, 't')];
      const other = c.append(u, 'other thread');
      await adapter.write([a, b, cc, other]);
      const cutId = c.id();
      await adapter.write([{ kind: 'cut', user: u, id: cutId, thread: 't', from: after(a.id), to: cutId }]);
      const regenerated = c.append(u, 'b again', undefined, 't');
      await adapter.write([regenerated, b, cc]);
      expect(await texts(adapter, u, 't')).toEqual(['a', 'b again']);
      expect(await texts(adapter, u)).toEqual(['other thread']);
    }),
  );

  c.it(
    'lists threads most recently active first, with titles and counts, page by page',
    w(async (adapter) => {
      const u = c.user();
      const t0 = Date.UTC(2025, 0, 1);
      const at = (thread: string, content: string, minutes: number): AppendOp => ({
        ...c.append(u, content, undefined, thread),
        createdAt: t0 + minutes * 60_000,
      });
      await adapter.write([at('old', '1', 0), at('old', '2', 1), at('mid', '1', 5), at('new', '1', 10), at('new', '2', 11), at('new', '3', 12)]);
      await adapter.write([{ kind: 'title', user: u, id: c.id(), thread: 'mid', title: 'Haircut on Friday' }]);
      const threads = await allThreads(adapter, u);
      const byId = new Map(threads.map((t) => [t.id, t]));
      expect(threads.map((t) => t.id).sort()).toEqual(['mid', 'new', 'old']);
      expect(byId.get('old')).toMatchObject({ title: null, messages: 2, createdAt: new Date(t0) });
      expect(byId.get('new')).toMatchObject({ messages: 3, createdAt: new Date(t0 + 10 * 60_000) });
      expect(byId.get('mid')).toMatchObject({ title: 'Haircut on Friday', messages: 1 });
      // 'mid' was renamed just now: the most recent activity.
      expect(threads.map((t) => t.id)).toEqual(['mid', 'new', 'old']);
      for (let i = 1; i < threads.length; i++) expect(threads[i - 1]!.updatedAt.getTime()).toBeGreaterThanOrEqual(threads[i]!.updatedAt.getTime());
      // Pages of one cover every thread once, in the same order.
      expect((await allThreads(adapter, u, 1)).map((t) => t.id)).toEqual(threads.map((t) => t.id));
      expect((await adapter.listThreads(c.user(), 10, null)).threads).toEqual([]);
    }),
  );

  c.it(
    "moves a thread's activity with a person's edit, not with a draft's",
    w(async (adapter) => {
      const u = c.user();
      const t0 = Date.UTC(2025, 0, 1);
      const a: AppendOp = { ...c.append(u, 'a', undefined, 'a'), createdAt: t0 };
      const b: AppendOp = { ...c.append(u, 'b', undefined, 'b'), createdAt: t0 + 60_000 };
      await adapter.write([a, b]);
      expect((await allThreads(adapter, u)).map((t) => t.id)).toEqual(['b', 'a']);
      // A draft's progress (no updatedAt) leaves the order alone.
      await adapter.write([{ kind: 'edit', user: u, id: c.id(), thread: 'a', target: a.id, content: 'a, streamed' }]);
      expect((await allThreads(adapter, u)).map((t) => t.id)).toEqual(['b', 'a']);
      const edited = t0 + 5 * 60_000;
      await adapter.write([{ kind: 'edit', user: u, id: c.id(), thread: 'a', target: a.id, content: 'a, edited', updatedAt: edited }]);
      const threads = await allThreads(adapter, u);
      expect(threads.map((t) => t.id)).toEqual(['a', 'b']);
      expect(threads[0]!.updatedAt).toEqual(new Date(edited));
    }),
  );

  c.it(
    'lets the newest title win whatever the order, and null remove it',
    w(async (adapter) => {
      const u = c.user();
      const older: Op = { kind: 'title', user: u, id: c.id(), thread: 't', title: 'older' };
      const newer: Op = { kind: 'title', user: u, id: c.id(), thread: 't', title: 'newer' };
      await adapter.write([newer, older]);
      expect((await allThreads(adapter, u)).map((t) => [t.id, t.title, t.messages])).toEqual([['t', 'newer', 0]]);
      await adapter.write([{ kind: 'title', user: u, id: c.id(), thread: 't', title: null }]);
      expect(await allThreads(adapter, u)).toEqual([]);
    }),
  );

  c.it(
    'drops a thread with its title for good; the same id can start again',
    w(async (adapter) => {
      const u = c.user();
      const a = c.append(u, 'a', undefined, 't');
      await adapter.write([a, c.append(u, 'kept'), { kind: 'title', user: u, id: c.id(), thread: 't', title: 'T' }]);
      const drop: Op = { kind: 'dropThread', user: u, id: c.id(), thread: 't' };
      await adapter.write([drop]);
      await adapter.write([a, drop]);
      expect(await texts(adapter, u, 't')).toEqual([]);
      expect((await allThreads(adapter, u)).map((t) => t.id)).toEqual(['main']);
      await adapter.write([c.append(u, 'again', undefined, 't')]);
      const again = (await allThreads(adapter, u)).find((t) => t.id === 't');
      expect(again).toMatchObject({ title: null, messages: 1 });
      expect(await texts(adapter, u, 't')).toEqual(['again']);
    }),
  );

  c.it(
    'erases every thread and title of a deleted user',
    w(async (adapter) => {
      const u = c.user();
      const a = c.append(u, 'a', undefined, 't');
      await adapter.write([a, c.append(u, 'm'), { kind: 'title', user: u, id: c.id(), thread: 't', title: 'T' }]);
      const del: Op = { kind: 'delete', user: u, id: c.id() };
      await adapter.write([del]);
      await adapter.write([a]);
      expect(await texts(adapter, u, 't')).toEqual([]);
      expect(await texts(adapter, u)).toEqual([]);
      expect(await adapter.readMessage(u, a.id)).toBeNull();
      expect(await allThreads(adapter, u)).toEqual([]);
    }),
  );

  c.it(
    'converges whatever order a journal of thread ops is replayed in',
    w(async (adapter) => {
      const u = c.user();
      const ops: Op[] = [];
      const appends: AppendOp[] = [];
      for (let i = 0; i < 12; i++) {
        const op = c.append(u, `m${i}`, undefined, i % 3 === 0 ? 'x' : 'y');
        appends.push(op);
        ops.push(op);
        if (i === 4) ops.push({ kind: 'clear', user: u, id: c.id(), thread: 'x' });
        if (i === 7) ops.push({ kind: 'cut', user: u, id: c.id(), thread: 'y', from: appends[5]!.id, to: appends[5]!.id });
        if (i === 9) ops.push({ kind: 'title', user: u, id: c.id(), thread: 'y', title: `title ${i}` });
      }
      const v = c.user();
      const inOrder = ops.map((op) => ({ ...op, user: v }));
      await adapter.write(inOrder);
      const shuffled = [...ops].sort(() => Math.random() - 0.5);
      for (const op of shuffled) await adapter.write([op]);
      await adapter.write(shuffled);
      for (const thread of ['x', 'y']) expect(await texts(adapter, u, thread)).toEqual(await texts(adapter, v, thread));
      const strip = (list: ThreadRecord[]) => list.map((t) => [t.id, t.title, t.messages]);
      expect(strip(await allThreads(adapter, u))).toEqual(strip(await allThreads(adapter, v)));
    }),
  );

  tokenTests(c);
  summaryTests(c);
}

/**
 * Version 2 of the cache and journal groups: a copy per thread; edits and cuts change a held copy
 * in place and never create one; a clear or drop of one thread leaves the others' copies; every
 * new kind of op is journaled and read back as it was written.
 */
export function conversationCacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;
  const message = (content: string, thread: string, id = c.id()): Message => ({
    id,
    role: 'user',
    content,
    createdAt: new Date(Date.UTC(2024, 0, 1)),
    tokens: 5,
    thread,
  });
  const fill = async (cache: CacheAdapter, u: string, thread: string, messages: Message[]) => {
    const miss = expectMiss(await cache.readHistory(u, limit, { thread }), `history of ${thread}`);
    expect(await cache.fillHistory(u, miss.version, messages, thread)).toBe(true);
  };
  const held = async (cache: CacheAdapter, u: string, thread: string) =>
    expectHit(await cache.readHistory(u, limit, { thread }), `history of ${thread}`).messages.map((m) => m.content);

  c.it(
    'holds one copy per thread',
    w(async (cache) => {
      const u = c.user();
      await fill(cache, u, 'topic', [message('t1', 'topic')]);
      expectMiss(await cache.readHistory(u, limit, { thread: 'main' }), 'history of main');
      expect(await held(cache, u, 'topic')).toEqual(['t1']);
      expect(expectHit(await cache.readHistory(u, limit, { thread: 'topic' }), 'topic').messages[0]?.thread).toBe('topic');
      await cache.write([{ ...c.append(u, 't2', undefined, 'topic') }, c.append(u, 'main, not held')]);
      expect(await held(cache, u, 'topic')).toEqual(['t1', 't2']);
      expectMiss(await cache.readHistory(u, limit, { thread: 'main' }), 'history of main');
    }),
  );

  c.it(
    'edits and cuts a held copy in place; finds messages only in held copies',
    w(async (cache) => {
      const u = c.user();
      const [a, b, d] = [message('a', 'topic'), message('b', 'topic'), message('d', 'topic')];
      await fill(cache, u, 'topic', [a, b, d]);
      const newer = c.id();
      await cache.write([{ kind: 'edit', user: u, id: newer, thread: 'topic', target: b.id, content: 'b edited', meta: { by: 'x' } }]);
      // An older edit arriving late changes nothing.
      await cache.write([{ kind: 'edit', user: u, id: b.id, thread: 'topic', target: b.id, content: 'stale' }]);
      expect(await held(cache, u, 'topic')).toEqual(['a', 'b edited', 'd']);
      expect(await cache.readMessage(u, b.id)).toMatchObject({ id: b.id, content: 'b edited', meta: { by: 'x' }, thread: 'topic' });
      await cache.write([{ kind: 'cut', user: u, id: c.id(), thread: 'topic', from: a.id, to: a.id }]);
      expect(await held(cache, u, 'topic')).toEqual(['b edited', 'd']);
      expect(await cache.readMessage(u, a.id)).toBeNull();
      expect(await cache.readMessage(u, c.id())).toBeNull();
    }),
  );

  c.it(
    "drops only the cleared or dropped thread's copy; a delete drops them all",
    w(async (cache) => {
      const u = c.user();
      await fill(cache, u, 'main', [message('m', 'main')]);
      await fill(cache, u, 'x', [message('x', 'x')]);
      await fill(cache, u, 'y', [message('y', 'y')]);
      await cache.write([{ kind: 'clear', user: u, id: c.id(), thread: 'x' }]);
      await cache.write([{ kind: 'dropThread', user: u, id: c.id(), thread: 'y' }]);
      expect(await held(cache, u, 'main')).toEqual(['m']);
      for (const thread of ['x', 'y']) {
        const read = await cache.readHistory(u, limit, { thread });
        if (!isMiss(read)) expect(read.messages).toEqual([]);
      }
      await cache.write([{ kind: 'delete', user: u, id: c.id() }]);
      const main = await cache.readHistory(u, limit, { thread: 'main' });
      if (!isMiss(main)) expect(main.messages).toEqual([]);
    }),
  );

  c.it(
    'moves the version when an edit, cut or title finds no copy, so an older fill fails',
    w(async (cache) => {
      for (const kind of ['edit', 'cut', 'title', 'dropThread'] as const) {
        const u = c.user();
        const m = message('old', 't');
        const miss = expectMiss(await cache.readHistory(u, limit, { thread: 't' }), 'history');
        const op: Op =
          kind === 'edit'
            ? { kind, user: u, id: c.id(), thread: 't', target: m.id, content: 'new' }
            : kind === 'cut'
              ? { kind, user: u, id: c.id(), thread: 't', from: m.id, to: m.id }
              : kind === 'title'
                ? { kind, user: u, id: c.id(), thread: 't', title: 'T' }
                : { kind, user: u, id: c.id(), thread: 't' };
        await cache.write([op]);
        expect(await cache.fillHistory(u, miss.version, [m], 't')).toBe(false);
      }
    }),
  );

  c.it(
    'journals every new kind of op and reads it back as written',
    w(async (cache) => {
      const u = c.user();
      const a: AppendOp = { ...c.append(u, 'draft', undefined, 'topic'), status: 'streaming', meta: { k: [1] } };
      const ops: Op[] = [
        a,
        { kind: 'edit', user: u, id: c.id(), thread: 'topic', target: a.id, content: 'done', meta: { k: 2 }, updatedAt: 1_700_000_000_000 },
        { kind: 'edit', user: u, id: c.id(), thread: 'topic', target: a.id, content: 'stopped', status: 'aborted' },
        { kind: 'cut', user: u, id: c.id(), thread: 'topic', from: after(a.id), to: c.id() },
        { kind: 'title', user: u, id: c.id(), thread: 'topic', title: 'A "title" \\ ✓' },
        { kind: 'title', user: u, id: c.id(), thread: 'topic', title: null },
        { kind: 'clear', user: u, id: c.id(), thread: 'other' },
        { kind: 'dropThread', user: u, id: c.id(), thread: 'topic' },
      ];
      await cache.write(ops, { pending: true });
      expect(await cache.readPending(u)).toEqual(ops);
    }),
  );

  draftCacheTests(c);
  threadCopyCacheTests(c);
  tokenCacheTests(c);
  summaryCacheTests(c);
}

/**
 * Streaming drafts in the cache role (optional methods `draftProgress` and `staleDrafts`): the
 * latest text of a draft that reached the cache, with its flush time, held whether or not a copy
 * of its thread is; an edit with another status ends it; the sweeper's index finds drafts not
 * flushed since a time, over every user.
 */
export function draftCacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter, context: TestContext) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;
  const start = (u: string, thread = 'topic'): AppendOp => ({
    ...c.append(u, '', undefined, thread),
    role: 'assistant',
    status: 'streaming',
    meta: { model: 'm' },
  });
  const flush = (draft: AppendOp, content: string, extra: Partial<EditOp> = {}): EditOp => ({
    kind: 'edit',
    user: draft.user,
    id: c.id(),
    thread: draft.thread,
    target: draft.id,
    content,
    meta: { model: 'm' },
    status: 'streaming',
    ...extra,
  });
  /** An edit that ends a draft: complete (no status) or aborted. */
  const end = (draft: AppendOp, content: string, status?: 'aborted'): EditOp => {
    const { status: _, meta: __, ...op } = flush(draft, content);
    return status === undefined ? op : { ...op, status };
  };
  const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

  c.it(
    "records a draft's latest text and flush time with no copy held; an edit that finishes or aborts it ends the record",
    w(async (cache, test) => {
      if (!cache.draftProgress) return test.skip('the adapter has no draftProgress()');
      const u = c.user();
      const draft = start(u);
      const t0 = Date.now();
      await cache.write([draft], { pending: true });
      const started = await cache.draftProgress(u, draft.id);
      expect(started?.message).toEqual({
        id: draft.id,
        role: 'assistant',
        content: '',
        createdAt: new Date(draft.createdAt),
        thread: 'topic',
        meta: { model: 'm' },
        status: 'streaming',
        tokens: defaultTokens(draft),
      });
      expect(started?.at).toBeGreaterThanOrEqual(t0);
      expect(started?.at).toBeLessThanOrEqual(Date.now());
      const older = flush(draft, 'Hel');
      const newer = flush(draft, 'Hello, wor');
      await pause();
      await cache.write([newer]);
      // A flush that arrives late changes nothing.
      await cache.write([older]);
      const progress = await cache.draftProgress(u, draft.id);
      expect(progress?.message).toMatchObject({
        id: draft.id,
        role: 'assistant',
        content: 'Hello, wor',
        thread: 'topic',
        status: 'streaming',
        meta: { model: 'm' },
      });
      expect(progress?.message.createdAt).toEqual(new Date(draft.createdAt));
      expect(progress?.at).toBeGreaterThanOrEqual(started?.at ?? 0);
      await cache.write([end(draft, 'Hello, world')], { pending: true });
      expect(await cache.draftProgress(u, draft.id)).toBeNull();
      // Nothing to rebuild it from: a flush after the end records nothing.
      await cache.write([flush(draft, 'late')]);
      expect(await cache.draftProgress(u, draft.id)).toBeNull();
      const aborted = start(u, 'main');
      await cache.write([aborted, flush(aborted, 'cut')]);
      expect((await cache.draftProgress(u, aborted.id))?.message.content).toBe('cut');
      await cache.write([end(aborted, 'cut', 'aborted')], { pending: true });
      expect(await cache.draftProgress(u, aborted.id)).toBeNull();
      expect(await cache.draftProgress(u, c.id())).toBeNull();
    }),
  );

  c.it(
    'flushes a draft into a held copy of its thread as well',
    w(async (cache, test) => {
      if (!cache.draftProgress) return test.skip('the adapter has no draftProgress()');
      const u = c.user();
      const first: Message = { id: c.id(), role: 'user', content: 'question', createdAt: new Date(Date.UTC(2024, 0, 1)), tokens: 5, thread: 'topic' };
      const miss = expectMiss(await cache.readHistory(u, limit, { thread: 'topic' }), 'history of topic');
      expect(await cache.fillHistory(u, miss.version, [first], 'topic')).toBe(true);
      const draft = start(u);
      await cache.write([draft], { pending: true });
      await cache.write([flush(draft, 'partial answer')]);
      const held = expectHit(await cache.readHistory(u, limit, { thread: 'topic' }), 'history of topic').messages;
      expect(held.map((m) => [m.content, m.status])).toEqual([
        ['question', undefined],
        ['partial answer', 'streaming'],
      ]);
      expect((await cache.draftProgress(u, draft.id))?.message).toEqual(held[1]);
      expect(await cache.readMessage(u, draft.id)).toEqual(held[1]);
    }),
  );

  c.it(
    'finds drafts not flushed since a time, oldest first, over every user; ended and erased drafts drop out',
    w(async (cache, test) => {
      if (!cache.staleDrafts) return test.skip('the adapter has no staleDrafts()');
      const [u1, u2] = [c.user(), c.user()];
      const mine = (list: { user: string; id: string }[]) => list.filter((d) => d.user === u1 || d.user === u2);
      const before = Date.now() - 1;
      const d1 = start(u1);
      const d2 = start(u2, 'main');
      const d3 = start(u1, 'other');
      for (const draft of [d1, d2, d3]) {
        await cache.write([draft], { pending: true });
        await pause();
      }
      const cutoff = Date.now();
      await pause();
      const all = [d1, d2, d3].map((d) => ({ user: d.user, id: d.id }));
      expect(mine(await cache.staleDrafts(Date.now() + 1, 10_000))).toEqual(all);
      expect(mine(await cache.staleDrafts(before, 10_000))).toEqual([]);
      expect((await cache.staleDrafts(Date.now() + 1, 1)).length).toBeLessThanOrEqual(1);
      // A flush makes a draft fresh again.
      await cache.write([flush(d1, 'still going')]);
      expect(mine(await cache.staleDrafts(cutoff, 10_000))).toEqual(all.slice(1));
      await cache.write([end(d2, 'done')], { pending: true });
      expect(mine(await cache.staleDrafts(Date.now() + 1, 10_000))).toEqual([all[2], all[0]]);
      await cache.write([{ kind: 'delete', user: u1, id: c.id() }], { pending: true });
      expect(mine(await cache.staleDrafts(Date.now() + 1, 10_000))).toEqual([]);
      expect(await cache.draftProgress?.(u1, d3.id)).toBeNull();
    }),
  );
}

/** Invalidation in the cache role reaches the copy of every thread, not only 'main'. */
export function threadCopyCacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;
  const message = (content: string, thread: string): Message => ({
    id: c.id(),
    role: 'user',
    content,
    createdAt: new Date(Date.UTC(2024, 0, 1)),
    tokens: 5,
    thread,
  });
  const fillThreads = async (cache: CacheAdapter, u: string) => {
    for (const thread of ['main', 'x', 'y']) {
      const miss = expectMiss(await cache.readHistory(u, limit, { thread }), `history of ${thread}`);
      expect(await cache.fillHistory(u, miss.version, [message(thread, thread)], thread)).toBe(true);
      expectHit(await cache.readHistory(u, limit, { thread }), `history of ${thread}`);
    }
  };

  c.it(
    'invalidate and invalidateAll drop the copy of every thread, and fail fills in flight for any thread',
    w(async (cache) => {
      const [u, v] = [c.user(), c.user()];
      await fillThreads(cache, u);
      await fillThreads(cache, v);
      const inFlight = expectMiss(await cache.readHistory(u, limit, { thread: 'z' }), 'history of z');
      await cache.invalidate([u], false);
      for (const thread of ['main', 'x', 'y']) expectMiss(await cache.readHistory(u, limit, { thread }), `history of ${thread} after invalidate`);
      expect(await cache.readMessage(u, c.id())).toBeNull();
      expect(await cache.fillHistory(u, inFlight.version, [message('z', 'z')], 'z')).toBe(false);
      expectHit(await cache.readHistory(v, limit, { thread: 'x' }), 'history of x of another user');
      await cache.invalidateAll();
      for (const thread of ['main', 'x', 'y']) expectMiss(await cache.readHistory(v, limit, { thread }), `history of ${thread} after invalidateAll`);
    }),
  );
}

/**
 * Issue 14: a message's token count (`AppendOp.tokens`, `EditOp.tokens`) is stored as given and
 * read back as `Message.tokens`, through single and batched writes and edits; a message stored
 * without one (written by 0.1, or an edit that carried none) reads with the default formula.
 */
export function tokenTests(c: ContractContext): void {
  const w = <A extends StorageAdapter>(test: (adapter: A) => Promise<void>) => c.withAdapter<A>(test, 'durable');
  const read = async (adapter: StorageAdapter, u: string, thread?: string) => {
    const r = await adapter.readHistory(u, c.historyLimit, thread === undefined ? undefined : { thread });
    if (isMiss(r)) throw new Error('a durable tier answered a miss');
    return r.messages;
  };

  c.it(
    'stores the token count of a message as given and reads it back; one without a count reads with the default formula',
    w(async (adapter) => {
      const u = c.user();
      const one = { ...c.append(u, 'counted alone'), tokens: 17 };
      await adapter.write([one]);
      const batch = [{ ...c.append(u, 'counted in a batch', undefined, 'topic'), tokens: 0 }, c.append(u, 'not counted', undefined, 'topic')];
      await adapter.write(batch);
      expect((await read(adapter, u)).map((m) => m.tokens)).toEqual([17]);
      expect((await read(adapter, u, 'topic')).map((m) => m.tokens)).toEqual([0, defaultTokens(batch[1] as AppendOp)]);
      expect((await adapter.readMessage(u, one.id))?.tokens).toBe(17);
    }),
  );

  c.it(
    "an edit replaces the count with its own, or with the default formula's of the new content when it carries none",
    w(async (adapter) => {
      const u = c.user();
      const a = { ...c.append(u, 'first'), tokens: 5 };
      const b = { ...c.append(u, 'second'), tokens: 6 };
      await adapter.write([a, b]);
      const edit = (target: AppendOp, content: string, tokens?: number): EditOp => ({
        kind: 'edit',
        user: u,
        id: c.id(),
        thread: 'main',
        target: target.id,
        content,
        ...(tokens === undefined ? {} : { tokens }),
      });
      await adapter.write([edit(a, 'first, edited', 42)]);
      await adapter.write([edit(b, 'second, edited at some length')]);
      expect((await read(adapter, u)).map((m) => m.tokens)).toEqual([42, defaultTokens({ content: 'second, edited at some length' })]);
      expect((await adapter.readMessage(u, a.id))?.tokens).toBe(42);
    }),
  );
}

/** Issue 14 in the cache role: counts survive a fill, a write into a held copy and an edit of it. */
export function tokenCacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  const limit = c.historyLimit;

  c.it(
    'keeps token counts through a fill, an append to the held copy and an edit; an item without one reads with the default formula',
    w(async (cache) => {
      const u = c.user();
      const miss = expectMiss(await cache.readHistory(u, limit), 'history of main');
      const filled: Message[] = [{ id: c.id(), role: 'user', content: 'filled', createdAt: new Date(Date.UTC(2024, 0, 1)), thread: 'main', tokens: 11 }];
      expect(await cache.fillHistory(u, miss.version, filled, 'main')).toBe(true);
      const appended = { ...c.append(u, 'appended'), tokens: 12 };
      const uncounted = c.append(u, 'uncounted');
      await cache.write([appended, uncounted]);
      const tokens = async () => expectHit(await cache.readHistory(u, limit), 'history of main').messages.map((m) => m.tokens);
      expect(await tokens()).toEqual([11, 12, defaultTokens(uncounted)]);
      await cache.write([{ kind: 'edit', user: u, id: c.id(), thread: 'main', target: appended.id, content: 'appended, edited', tokens: 30 }]);
      await cache.write([{ kind: 'edit', user: u, id: c.id(), thread: 'main', target: filled[0]!.id, content: 'filled, edited without a count' }]);
      expect(await tokens()).toEqual([defaultTokens({ content: 'filled, edited without a count' }), 30, defaultTokens(uncounted)]);
    }),
  );
}

/**
 * Version 3 of the durable contract: rolling summaries (`summary` ops, `readSummary`). Last writer
 * by op id wins; a clear or drop of the thread, or an erasure of the user, at or above a summary's
 * id erases it, and a replay never brings it back; an edit or cut of a covered message newer than
 * the summary marks it dirty; replays (twice, backwards) change nothing.
 */
export function summaryTests(c: ContractContext): void {
  const w = <A extends StorageAdapter>(test: (adapter: A) => Promise<void>) => c.withAdapter<A>(test, 'durable');
  const summary = (user: string, text: string, covers: string, thread = 'main'): SummaryOp => ({ kind: 'summary', user, id: c.id(), thread, text, covers });

  c.it(
    "stores a thread's summary with what it covers; the newest op id wins, whatever the order",
    w(async (adapter) => {
      const u = c.user();
      const m = c.append(u, 'hello', undefined, 't');
      const older = summary(u, 'older', m.id, 't');
      const newer = summary(u, 'newer: "quoted"\nsecond line ✓', m.id, 't');
      expect(await adapter.readSummary(u, 't')).toBeNull();
      await adapter.write([m, newer]);
      await adapter.write([older]);
      expect(await adapter.readSummary(u, 't')).toEqual({ text: newer.text, id: newer.id, covers: m.id, dirty: '' });
      expect(await adapter.readSummary(u, 'main')).toBeNull();
      await adapter.write([newer, older]);
      expect((await adapter.readSummary(u, 't'))?.text).toBe(newer.text);
    }),
  );

  c.it(
    'marks a summary dirty when a covered message is edited or cut after it, not for newer messages',
    w(async (adapter) => {
      const u = c.user();
      const a = c.append(u, 'a');
      const b = c.append(u, 'b');
      const s = summary(u, 'sum of a', a.id);
      await adapter.write([a, b, s]);
      await adapter.write([{ kind: 'edit', user: u, id: c.id(), thread: 'main', target: b.id, content: 'b2' }]);
      expect((await adapter.readSummary(u, 'main'))?.dirty).toBe('');
      const e: Op = { kind: 'edit', user: u, id: c.id(), thread: 'main', target: a.id, content: 'a2' };
      await adapter.write([e]);
      expect((await adapter.readSummary(u, 'main'))?.dirty).toBe(e.id);
      const fresh = summary(u, 'sum of a2', a.id);
      await adapter.write([fresh]);
      expect(await adapter.readSummary(u, 'main')).toEqual({ text: 'sum of a2', id: fresh.id, covers: a.id, dirty: '' });
      await adapter.write([e]);
      expect((await adapter.readSummary(u, 'main'))?.dirty).toBe('');
      const cut: Op = { kind: 'cut', user: u, id: c.id(), thread: 'main', from: a.id, to: a.id };
      await adapter.write([cut]);
      expect((await adapter.readSummary(u, 'main'))?.dirty).toBe(cut.id);
    }),
  );

  c.it(
    'erases a summary with its thread (clear, drop) or its user; an older summary op never comes back',
    w(async (adapter) => {
      const u = c.user();
      const ops: Op[] = [];
      for (const thread of ['a', 'b', 'c', 'd']) {
        const m = c.append(u, `in ${thread}`, undefined, thread);
        ops.push(m, summary(u, `sum ${thread}`, m.id, thread));
      }
      await adapter.write(ops);
      const clear: Op = { kind: 'clear', user: u, id: c.id(), thread: 'a' };
      const drop: Op = { kind: 'dropThread', user: u, id: c.id(), thread: 'b' };
      await adapter.write([clear]);
      await adapter.write([drop]);
      expect(await adapter.readSummary(u, 'a')).toBeNull();
      expect(await adapter.readSummary(u, 'b')).toBeNull();
      expect((await adapter.readSummary(u, 'c'))?.text).toBe('sum c');
      await adapter.write(ops);
      expect(await adapter.readSummary(u, 'a')).toBeNull();
      expect(await adapter.readSummary(u, 'b')).toBeNull();
      const later = summary(u, 'after the clear', clear.id, 'a');
      await adapter.write([later]);
      expect((await adapter.readSummary(u, 'a'))?.text).toBe('after the clear');
      await adapter.write([{ kind: 'delete', user: u, id: c.id() }]);
      await adapter.write(ops);
      await adapter.write([later]);
      for (const thread of ['a', 'b', 'c', 'd']) expect(await adapter.readSummary(u, thread)).toBeNull();
    }),
  );

  c.it(
    'converges when a journal with summaries is replayed twice and backwards',
    w(async (adapter) => {
      const u = c.user();
      const v = c.user();
      const ops: Op[] = [];
      const messages: AppendOp[] = [];
      for (let i = 0; i < 10; i++) {
        const m = c.append(u, `m${i}`, undefined, i % 2 === 0 ? 'x' : 'y');
        messages.push(m);
        ops.push(m);
        if (i === 3) ops.push(summary(u, 'x up to m2', messages[2]!.id, 'x'), summary(u, 'y up to m3', m.id, 'y'));
        if (i === 5) ops.push({ kind: 'edit', user: u, id: c.id(), thread: 'y', target: messages[1]!.id, content: 'm1 edited' });
        if (i === 6) ops.push({ kind: 'clear', user: u, id: c.id(), thread: 'x' });
        if (i === 8) ops.push(summary(u, 'x after the clear', m.id, 'x'));
      }
      for (const op of ops) await adapter.write([{ ...op, user: v }]);
      await adapter.write(ops);
      const expected = { x: await adapter.readSummary(u, 'x'), y: await adapter.readSummary(u, 'y') };
      expect(expected.x?.text).toBe('x after the clear');
      expect(expected.y?.text).toBe('y up to m3');
      expect(expected.y?.dirty).not.toBe('');
      await adapter.write(ops);
      for (const op of [...ops].reverse()) await adapter.write([op]);
      await adapter.write([...ops].reverse());
      expect({ x: await adapter.readSummary(u, 'x'), y: await adapter.readSummary(u, 'y') }).toEqual(expected);
      expect({ x: await adapter.readSummary(v, 'x'), y: await adapter.readSummary(v, 'y') }).toEqual(expected);
      for (const thread of ['x', 'y']) expect(await texts(adapter, u, thread)).toEqual(await texts(adapter, v, thread));
    }),
  );
}

/** Summaries in the cache role: journaled and read back as written; the cache holds no copy (readSummary answers null). */
export function summaryCacheTests(c: ContractContext): void {
  const w = (test: (adapter: CacheAdapter) => Promise<void>) => c.withAdapter<CacheAdapter>(test, 'cache');
  c.it(
    'journals summary ops as written and holds no summary itself',
    w(async (cache) => {
      const u = c.user();
      const m = c.append(u, 'x', undefined, 'topic');
      const ops: Op[] = [m, { kind: 'summary', user: u, id: c.id(), thread: 'topic', text: 'a "summary"\nof ✓ things', covers: m.id }];
      await cache.write(ops, { pending: true });
      expect(await cache.readPending(u)).toEqual(ops);
      expect(await cache.readSummary(u, 'topic')).toBeNull();
    }),
  );
}
