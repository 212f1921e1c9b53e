import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, PostgresAdapter, TieredStore, type SummarizeInput, type TieredStoreOptions } from '../src/index.js';
import { decodeOp } from '../src/model/codec.js';
import { defaultTokens } from '../src/model/budget.js';
import { OutageRig } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, redisUrl } from './helpers/services.js';
import { durableConfig, isolation, makeStore, type Topology } from './helpers/stores.js';
import { GatedHook, standIn } from './helpers/summaries.js';
import { loadContext } from '../src/integrations/ai.js';
import { UserMemory } from '../src/integrations/user-memory.js';
import { modelMessageSchema } from 'ai';

// Rolling summaries on the real servers: written in the background, one run per thread at a time
// across processes, retried when the hook fails or hangs (writes go on meanwhile), through
// outages and replays like every other write, erased with their thread or user.

let rig: OutageRig | undefined;
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
  await rig?.close();
  rig = undefined;
});

function store(topology: Topology, names: ReturnType<typeof isolation>, options: TieredStoreOptions): TieredStore {
  const s = makeStore(topology, names, options);
  cleanup.push(() => s.close());
  return s;
}

function names(name: string) {
  const n = isolation(name);
  cleanup.push(async () => {
    await cleanupRedis(redisUrl(), n.keyPrefix);
    await cleanupPostgres(databaseUrl(), n.schema);
  });
  return n;
}

async function pgSummary(sql: OutageRig['sql'], schema: string, user: string, thread = 'main') {
  return sql`select text, covers, summary_v, dirty from ${sql(`${schema}.summaries`)} where user_id = ${user} and thread = ${thread} and text is not null`;
}

describe('outages', () => {
  it.each([
    ['write-through', 'postgres'],
    ['write-behind', 'postgres'],
    ['write-through', 'redis'],
  ] as const)('%s, %s down: a summary written during the outage is read back at once and lands once after recovery', async (writeMode, down) => {
    rig = await OutageRig.start({ writeMode, historyLimit: 10, summarize: standIn, summarizeAfterTokens: 1_000_000 });
    const s = rig.store;
    const ids: string[] = [];
    for (const text of ['a1', 'a2']) ids.push((await s.addMemory('u', 'user', text)).id);
    await s.getHistory('u');
    if (down === 'redis') await rig.redis.refuse();
    else await rig.pg.refuse();
    for (const text of ['a3', 'a4']) ids.push((await s.addMemory('u', 'user', text)).id);
    expect(await s.summarizeNow('u')).toBe('a1|a2|a3|a4');
    const during = await s.getContext('u', { maxTokens: 1000 });
    expect(during).toMatchObject({ summary: 'a1|a2|a3|a4', messages: [] });
    ids.push((await s.addMemory('u', 'user', 'a5')).id);
    expect((await s.getContext('u', { maxTokens: 1000 })).messages.map((m) => m.content)).toEqual(['a5']);

    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    const rows = await pgSummary(rig.sql, rig.names.schema, 'u');
    expect(rows.map((r) => [r.text, r.covers, r.dirty])).toEqual([['a1|a2|a3|a4', ids[3], '']]);
    const other = rig.anotherProcess();
    cleanup.push(() => other.close());
    expect(await other.getContext('u', { maxTokens: 1000 })).toMatchObject({ summary: 'a1|a2|a3|a4', messages: [{ content: 'a5' }] });
  });
});

describe('replay', () => {
  it('a journal with summary ops replayed again and backwards changes nothing', async () => {
    rig = await OutageRig.start({ writeMode: 'write-behind', historyLimit: 10, summarize: standIn, summarizeAfterTokens: 1_000_000 });
    const s = rig.store;
    const m1 = await s.addMemory('u', 'user', 'm1');
    await s.addMemory('u', 'user', 'm2');
    await s.addMemory('u', 'user', 'x1', { thread: 'x' });
    await rig.pg.refuse();
    await s.summarizeNow('u');
    await s.addMemory('u', 'user', 'm3');
    await s.summarizeNow('u');
    await s.summarizeNow('u', { thread: 'x' });
    await s.updateMessage('u', m1.id, { content: 'm1 edited' });
    await s.deleteThread('u', 'x');
    await s.addMemory('u', 'user', 'x2', { thread: 'x' });
    await s.summarizeNow('u', { thread: 'x' });
    // The edit of a covered message marked the summary: a background rerun replaces it.
    await expect.poll(async () => (await s.getContext('u', { maxTokens: 1000 })).summary, { timeout: 10_000 }).toBe('m1 edited|m2|m3');

    const redis = new Redis(rig.redisDirect);
    cleanup.push(() => redis.quit());
    const journalKey = `${rig.names.keyPrefix}:{u}:j`;
    const entries = await redis.lrange(journalKey, 0, -1);
    expect(entries.filter((e) => decodeOp('u', e).kind === 'summary')).toHaveLength(5);

    await rig.pg.pass();
    await rig.recovered();
    const read = async () => ({
      main: (await pgSummary(rig!.sql, rig!.names.schema, 'u', 'main'))[0],
      x: (await pgSummary(rig!.sql, rig!.names.schema, 'u', 'x'))[0],
    });
    const once = await read();
    expect(once.main).toMatchObject({ text: 'm1 edited|m2|m3', dirty: '' });
    expect(once.x).toMatchObject({ text: 'x2' });

    await redis.rpush(journalKey, ...entries);
    const again = rig.anotherProcess({ historyLimit: 10 });
    cleanup.push(() => again.close());
    await expect.poll(async () => (await again.syncNow()).pending, { timeout: 10_000 }).toBe(0);
    expect(await read()).toEqual(once);

    const pg = new PostgresAdapter({ url: databaseUrl(), schema: rig.names.schema });
    pg.bind(durableConfig(10));
    cleanup.push(() => pg.close());
    const ops = entries.map((e) => decodeOp('u', e));
    await pg.write([...ops].reverse());
    for (const op of [...ops].reverse()) await pg.write([op]);
    expect(await read()).toEqual(once);
    for (const st of [s, again]) {
      expect((await st.getContext('u', { thread: 'x', maxTokens: 100 })).summary).toBe('x2');
    }
  });
});

describe('runs', () => {
  it.each(['write-through', 'postgres only', 'redis only'] as const)(
    '%s: one run per thread at a time across two stores; another thread runs meanwhile',
    async (topology) => {
      const n = names(`sum_lease_${topology}`);
      const gated = new GatedHook();
      const a = store(topology, n, { summarize: gated.hook, summarizeAfterTokens: 1_000_000 });
      const b = store(topology, n, { summarize: gated.hook, summarizeAfterTokens: 1_000_000 });
      await a.addMemory('u', 'user', 'one');
      await a.addMemory('u', 'user', 'other thread', { thread: 'o' });
      gated.close();
      const first = a.summarizeNow('u');
      await expect.poll(() => gated.calls, { timeout: 10_000 }).toBe(1);
      const second = b.summarizeNow('u');
      const elsewhere = b.summarizeNow('u', { thread: 'o' });
      await expect.poll(() => gated.calls, { timeout: 10_000 }).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(gated.inputs.map((i) => i.thread).sort()).toEqual(['main', 'o']);
      gated.open();
      expect(await first).toBe('one');
      expect(await second).toBe('one');
      expect(await elsewhere).toBe('other thread');
      // b waited for a's run, then found nothing new to summarise.
      expect(gated.inputs.filter((i) => i.thread === 'main')).toHaveLength(1);
    },
  );

  it("a background run starts once the thread passes summarizeAfterTokens, off the caller's path", async () => {
    const n = names('sum_background');
    const gated = new GatedHook();
    const s = store('write-through', n, { summarize: gated.hook, summarizeAfterTokens: 60 });
    gated.close();
    const text = 'x'.repeat(100); // 29 tokens each
    await s.addMemory('u', 'user', text);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(gated.calls).toBe(0);
    await s.addMemory('u', 'user', text);
    await s.addMemory('u', 'user', text);
    await expect.poll(() => gated.calls, { timeout: 10_000 }).toBe(1);
    // The hook is stuck: writes go on.
    const started = performance.now();
    for (let i = 0; i < 20; i++) await s.addMemory('u', 'user', `w${i}`);
    expect(performance.now() - started).toBeLessThan(10_000);
    gated.open();
    await expect.poll(async () => (await s.getContext('u', { maxTokens: 10_000 })).summary, { timeout: 10_000 }).not.toBeNull();
    const context = await s.getContext('u', { maxTokens: 10_000 });
    expect(context.summary?.split('|').length).toBeGreaterThanOrEqual(3);
  });

  it.each(['throws', 'hangs'] as const)('a hook that %s is retried with backoff, logged once per streak, and writes go on meanwhile', async (failure) => {
    const n = names(`sum_retry_${failure}`);
    const logs: string[] = [];
    let calls = 0;
    const hook = async (input: SummarizeInput) => {
      calls++;
      if (calls <= 2) {
        if (failure === 'throws') throw new Error('model overloaded');
        await new Promise(() => {});
      }
      return standIn(input);
    };
    const s = store('write-through', n, {
      summarize: hook,
      summarizeAfterTokens: 10,
      summarizeTimeoutMs: 300,
      logger: { debug: () => {}, info: (m) => logs.push(`info ${m}`), warn: (m) => logs.push(`warn ${m}`), error: (m) => logs.push(`error ${m}`) },
    });
    const latencies: number[] = [];
    const deadline = Date.now() + 30_000;
    let i = 0;
    while (Date.now() < deadline) {
      const started = performance.now();
      await s.addMemory('u', 'user', `message number ${i++} with some words`);
      latencies.push(performance.now() - started);
      if ((await s.getContext('u', { maxTokens: 100_000 })).summary !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(calls).toBeGreaterThanOrEqual(3);
    expect((await s.getContext('u', { maxTokens: 100_000 })).summary).toContain('message number 0');
    expect(logs.filter((l) => l.startsWith('warn') && l.includes('summarize failed'))).toHaveLength(1);
    // Generous: a loaded 2-core machine; a blocked write would take the hook's whole deadline or more.
    expect(Math.max(...latencies)).toBeLessThan(2000);
  });

  it('editing or deleting a covered message marks the summary and a rerun replaces it', async () => {
    const n = names('sum_rerun');
    const s = store('write-through', n, { summarize: standIn, summarizeAfterTokens: 1_000_000 });
    const a = await s.addMemory('u', 'user', 'a');
    const b = await s.addMemory('u', 'user', 'b');
    expect(await s.summarizeNow('u')).toBe('a|b');
    await s.updateMessage('u', a.id, { content: 'A' });
    await expect.poll(async () => (await s.getContext('u', { maxTokens: 1000 })).summary, { timeout: 10_000 }).toBe('A|b');
    await s.deleteMessage('u', b.id);
    await expect.poll(async () => (await s.getContext('u', { maxTokens: 1000 })).summary, { timeout: 10_000 }).toBe('A');
  });

  it.each(['write-through', 'write-behind', 'redis only', 'postgres only', 'memory only'] as const)(
    '%s: deleteThread and deleteUser erase summaries',
    async (topology) => {
      const n = names(`sum_erase_${topology}`);
      const s = store(topology, n, { summarize: standIn, summarizeAfterTokens: 1_000_000 });
      for (const thread of ['main', 't']) {
        await s.addMemory('u', 'user', `in ${thread}`, { thread });
        await s.summarizeNow('u', { thread });
      }
      await s.addMemory('v', 'user', 'v');
      await s.summarizeNow('v');
      expect((await s.getContext('u', { thread: 't', maxTokens: 100 })).summary).toBe('in t');
      await s.deleteThread('u', 't');
      expect((await s.getContext('u', { thread: 't', maxTokens: 100 })).summary).toBeNull();
      expect((await s.getContext('u', { maxTokens: 100 })).summary).toBe('in main');
      await s.deleteUser('u');
      expect((await s.getContext('u', { maxTokens: 100 })).summary).toBeNull();
      expect((await s.getContext('v', { maxTokens: 100 })).summary).toBe('v');
      await s.syncNow();
      expect((await s.getContext('u', { maxTokens: 100 })).summary).toBeNull();
    },
  );
});

describe('getContext', () => {
  it('the summary plus the newest messages after it within maxTokens, the summary counted; tool calls kept whole; drafts left out', async () => {
    const n = names('sum_context');
    const s = store('write-through', n, { summarize: standIn, summarizeAfterTokens: 1_000_000 });
    for (const text of ['old one', 'old two']) await s.addMemory('u', 'user', text);
    expect(await s.summarizeNow('u')).toBe('old one|old two');
    const summaryTokens = defaultTokens({ content: 'old one|old two' });
    await s.addMemory('u', 'user', 'question');
    await s.addMemory('u', 'assistant', 'calling a tool');
    await s.addMemory('u', 'tool', 'result');
    const draft = await s.startDraft('u', 'assistant');
    draft.update('partial');
    const cost = (text: string) => defaultTokens({ content: text });
    const all = await s.getContext('u', { maxTokens: 1000 });
    expect(all.summary).toBe('old one|old two');
    expect(all.messages.map((m) => m.content)).toEqual(['question', 'calling a tool', 'result']);
    expect(all.tokens).toBe(summaryTokens + cost('question') + cost('calling a tool') + cost('result'));
    // Room for the summary and the tool unit, not the question.
    const tight = await s.getContext('u', { maxTokens: summaryTokens + cost('calling a tool') + cost('result') });
    expect(tight.messages.map((m) => m.content)).toEqual(['calling a tool', 'result']);
    // Room for the summary and the result only: a result without its call is never sent.
    const tighter = await s.getContext('u', { maxTokens: summaryTokens + cost('result') });
    expect(tighter).toEqual({ summary: 'old one|old two', messages: [], tokens: summaryTokens });
    // A summary larger than the budget is left out.
    expect((await s.getContext('u', { maxTokens: summaryTokens - 1 })).summary).toBeNull();
    await draft.finish('done');
    await expect(s.getContext('u', { maxTokens: 0 })).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION });
    await expect(s.getContext('u', { maxTokens: 1.5 })).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION });
    await expect(s.getContext('u', { thread: 'bad thread!', maxTokens: 10 })).rejects.toMatchObject({ code: ErrorCode.INVALID_THREAD });
    await expect(s.summarizeNow('u', { thread: 'bad thread!' })).rejects.toMatchObject({ code: ErrorCode.INVALID_THREAD });
  });

  it('without a summarize hook: no summary, summarizeNow resolves null; with nothing new it resolves the current summary', async () => {
    const n = names('sum_nohook');
    const plain = store('postgres only', n, {});
    await plain.addMemory('u', 'user', 'hi');
    expect(await plain.summarizeNow('u')).toBeNull();
    expect(await plain.getContext('u', { maxTokens: 100 })).toMatchObject({ summary: null, messages: [{ content: 'hi' }] });
    const n2 = names('sum_nothing');
    const s = store('postgres only', n2, { summarize: standIn });
    expect(await s.summarizeNow('u')).toBeNull();
    await s.addMemory('u', 'user', 'hi');
    expect(await s.summarizeNow('u')).toBe('hi');
    expect(await s.summarizeNow('u')).toBe('hi');
  });
});

describe('integrations', () => {
  it("AI SDK loadContext puts the summary first as a system message; ctx.memory.context and summarizeNow use the update's thread", async () => {
    const s = new TieredStore({ logger: false, summarize: standIn, summarizeAfterTokens: 1_000_000 });
    cleanup.push(() => s.close());
    await s.addMemory('u', 'user', 'early', { thread: 'topic' });
    const memory = new UserMemory(s, 'u', { thread: 'topic' });
    expect(await memory.summarizeNow()).toBe('early');
    await memory.add('user', 'later');
    expect(await memory.context({ maxTokens: 1000 })).toMatchObject({ summary: 'early', messages: [{ content: 'later' }] });
    const messages = await loadContext(s, 'u', { thread: 'topic', maxTokens: 1000 });
    expect(messages).toEqual([
      { role: 'system', content: 'Summary of the conversation so far:\nearly' },
      { role: 'user', content: 'later' },
    ]);
    for (const m of messages) expect(modelMessageSchema.safeParse(m).success).toBe(true);
    expect(await loadContext(s, 'u', { maxTokens: 1000 })).toEqual([]);
  });
});
