import { getEncoding } from 'js-tiktoken';
import { decodeMessage } from '../src/model/codec.js';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, type JsonObject, type TieredStore, type TokenCountInput } from '../src/index.js';
import { OutageRig } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore, TOPOLOGIES } from './helpers/stores.js';

// Issue 14: a real tokenizer's counts stored with each message in every tier, and budget reads
// (getHistory({ maxTokens })) in every layout and through outages.

const enc = getEncoding('cl100k_base');
const tiktoken = (content: string) => enc.encode(content).length;
const BAD: Record<string, unknown> = { nan: Number.NaN, negative: -1, infinite: Number.POSITIVE_INFINITY, string: 'x', huge: 2 ** 40, none: undefined };
/**
 * The tokenizer's count, plus 3 per message (the chat format's overhead). A message whose meta
 * says `t` counts that (budget semantics with round numbers); `bad` names a bad answer to return
 * (NaN, -1, ...) and `throw` throws, to check the coded error.
 */
function countTokens(m: TokenCountInput): number {
  const meta = m.meta as { t?: number; bad?: string; throw?: boolean } | undefined;
  if (meta?.throw) throw new Error('tokenizer failed');
  if (typeof meta?.bad === 'string') return BAD[meta.bad] as number;
  if (typeof meta?.t === 'number') return meta.t;
  return tiktoken(m.content) + 3;
}

const names = isolation('tokens');
const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
const redis = new Redis(redisUrl(), { lazyConnect: true });
afterAll(async () => {
  await sql.end({ timeout: 1 });
  redis.disconnect();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

let n = 0;
const newUser = () => `tok_${n++}_${Date.now()}`;
const TEXTS = ['Hello, world!', 'Привет, мир — как дела? 🌍', 'function add(a, b) { return a + b; }', ''];

describe.each(TOPOLOGIES)('token counts and budget reads (%s)', (topology) => {
  const store = makeStore(topology, names, { historyLimit: 5, draftFlushMs: 20, countTokens });
  afterAll(() => store.close());
  const hasPostgres = topology !== 'memory only' && topology !== 'redis only';
  const hasRedis = topology !== 'memory only' && topology !== 'postgres only';
  const t = (tokens: number): { meta: JsonObject } => ({ meta: { t: tokens } });
  const budget = async (user: string, maxTokens: number, extra: { limit?: number; thread?: string } = {}) =>
    (await store.getHistory(user, { maxTokens, ...extra })).map((m) => m.content);

  /** The counts each tier holds for the user's messages, by id. */
  async function stored(user: string): Promise<{ postgres?: Map<string, number>; redis?: Map<string, number> }> {
    const out: { postgres?: Map<string, number>; redis?: Map<string, number> } = {};
    if (hasPostgres) {
      const rows = await sql`select id, tokens from ${sql(`${names.schema}.messages`)} where user_id = ${user}`;
      out.postgres = new Map(rows.map((r) => [r.id as string, r.tokens as number]));
    }
    if (hasRedis) {
      const items = await redis.lrange(`${names.keyPrefix}:{${user}}:h`, 0, -1);
      out.redis = new Map(items.map((item) => [decodeMessage(item).id, decodeMessage(item).tokens]));
    }
    return out;
  }

  it("stores the tokenizer's count with each message in every tier, and an edit's count follows its new content", async () => {
    const user = newUser();
    const written = [];
    for (const [i, text] of TEXTS.entries()) written.push(await store.addMemory(user, i % 2 ? 'assistant' : 'user', text));
    for (const m of written) expect(m.tokens).toBe(tiktoken(m.content) + 3);
    const check = async () => {
      const history = await store.getHistory(user);
      expect(history.map((m) => m.tokens)).toEqual(TEXTS.map((x) => tiktoken(x) + 3));
    };
    await check();
    await store.syncNow();
    await check();
    const tiers = await stored(user);
    for (const m of written) {
      if (tiers.postgres) expect(tiers.postgres.get(m.id), `postgres ${m.id}`).toBe(m.tokens);
      // Redis holds the copy a read filled (cache role) or the whole history (Redis alone).
      if (tiers.redis) expect(tiers.redis.get(m.id), `redis ${m.id}`).toBe(m.tokens);
    }
    if (tiers.redis) expect(tiers.redis.size).toBe(TEXTS.length);

    const longer = 'Now this message is considerably longer than it was before the edit, with more tokens.';
    const edited = await store.updateMessage(user, written[0]!.id, { content: longer });
    expect(edited?.tokens).toBe(tiktoken(longer) + 3);
    expect((await store.getMessage(user, written[0]!.id))?.tokens).toBe(tiktoken(longer) + 3);
    expect((await store.getHistory(user))[0]?.tokens).toBe(tiktoken(longer) + 3);
    await store.syncNow();
    expect((await store.getHistory(user))[0]?.tokens).toBe(tiktoken(longer) + 3);
    const after = await stored(user);
    if (after.postgres) expect(after.postgres.get(written[0]!.id)).toBe(tiktoken(longer) + 3);
    if (after.redis?.has(written[0]!.id)) expect(after.redis.get(written[0]!.id)).toBe(tiktoken(longer) + 3);
  });

  it('returns the newest messages within the budget, keeping an assistant message and its tool results whole', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'u1', t(10));
    await store.addMemory(user, 'assistant', 'a1 calls tools', t(10));
    await store.addMemory(user, 'tool', 't1', t(10));
    await store.addMemory(user, 'tool', 't2', t(10));
    await store.addMemory(user, 'user', 'u2', t(10));
    await store.addMemory(user, 'assistant', 'a2', t(10));
    const check = async () => {
      expect(await budget(user, 30)).toEqual(['u2', 'a2']);
      expect(await budget(user, 45)).toEqual(['u2', 'a2']); // the tool unit (30) does not fit whole
      expect(await budget(user, 50)).toEqual(['a1 calls tools', 't1', 't2', 'u2', 'a2']);
      // Beyond the hot copy (historyLimit 5): the budget reads further back.
      expect(await budget(user, 60)).toEqual(['u1', 'a1 calls tools', 't1', 't2', 'u2', 'a2']);
      expect(await budget(user, 1_000_000)).toEqual(['u1', 'a1 calls tools', 't1', 't2', 'u2', 'a2']);
      // The limit bounds it too, and the window never starts with a tool result.
      expect(await budget(user, 1000, { limit: 4 })).toEqual(['u2', 'a2']);
      expect(await budget(user, 1000, { limit: 5 })).toEqual(['a1 calls tools', 't1', 't2', 'u2', 'a2']);
      expect(await budget(user, 9)).toEqual([]);
      expect(await budget(user, 10, { thread: 'other' })).toEqual([]);
    };
    await check();
    await store.syncNow();
    await check();
  });

  it('reads far back when the budget wants more than the hot copy holds', async () => {
    const user = newUser();
    for (let i = 0; i < 40; i++) await store.addMemory(user, i % 2 ? 'assistant' : 'user', `m${i}`, t(5));
    await store.syncNow();
    const all = await budget(user, 1000);
    expect(all).toHaveLength(40);
    expect(all[0]).toBe('m0');
    expect(await budget(user, 100)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i + 20}`));
    expect(await budget(user, 100, { limit: 7 })).toHaveLength(7);
  });

  it('leaves streaming drafts out; a finished or aborted draft counts its final text', async () => {
    const user = newUser();
    await store.addMemory(user, 'user', 'question', t(10));
    const draft = await store.startDraft(user, 'assistant');
    draft.update('partial answer so far');
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect((await store.getHistory(user)).map((m) => m.status)).toEqual([undefined, 'streaming']);
    expect(await budget(user, 1000)).toEqual(['question']);
    const final = 'The final answer, complete.';
    const done = await draft.finish(final);
    expect(done.tokens).toBe(tiktoken(final) + 3);
    expect(await budget(user, 1000)).toEqual(['question', final]);
    const other = await store.startDraft(user, 'assistant');
    other.update('stopped half way');
    const aborted = await other.abort();
    expect(aborted.tokens).toBe(tiktoken('stopped half way') + 3);
    await store.syncNow();
    const history = await store.getHistory(user);
    expect(history.map((m) => m.tokens)).toEqual([10, tiktoken(final) + 3, tiktoken('stopped half way') + 3]);
    expect(await budget(user, 1000)).toEqual(['question', final, 'stopped half way']);
  });

  it('refuses a bad maxTokens with INVALID_OPTION and a bad count with INVALID_TOKEN_COUNT, writing nothing', async () => {
    const user = newUser();
    const kept = await store.addMemory(user, 'user', 'kept', t(3));
    for (const maxTokens of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10', null]) {
      await expect(store.getHistory(user, { maxTokens: maxTokens as number }), String(maxTokens)).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTION });
    }
    for (const bad of Object.keys(BAD)) {
      await expect(store.addMemory(user, 'assistant', 'secret text', { meta: { bad } }), bad).rejects.toMatchObject({
        code: ErrorCode.INVALID_TOKEN_COUNT,
      });
    }
    const thrown = await store.addMemory(user, 'tool', 'secret text', { meta: { throw: true }, thread: 'topic' }).catch((e: unknown) => e);
    expect(thrown).toMatchObject({ code: ErrorCode.INVALID_TOKEN_COUNT });
    expect((thrown as Error).message).toContain("the tool message of thread 'topic'");
    expect((thrown as Error).message).not.toContain('secret text');
    const edit = await store.updateMessage(user, kept.id, { content: 'secret text', meta: { bad: 'nan' } }).catch((e: unknown) => e);
    expect(edit).toMatchObject({ code: ErrorCode.INVALID_TOKEN_COUNT });
    expect((edit as Error).message).toContain(kept.id);
    expect((edit as Error).message).not.toContain('secret text');
    const draft = await store.startDraft(user, 'assistant');
    await expect(draft.finish('secret text', { meta: { bad: 'negative' } })).rejects.toMatchObject({ code: ErrorCode.INVALID_TOKEN_COUNT });
    await draft.finish('fine', { meta: { t: 2 } });
    await store.syncNow();
    expect((await store.getHistory(user)).map((m) => [m.content, m.tokens])).toEqual([
      ['kept', 3],
      ['fine', 2],
    ]);
    expect(await store.getHistory(user, { thread: 'topic' })).toEqual([]);
  });

  it('rounds a fractional count up', async () => {
    const user = newUser();
    expect((await store.addMemory(user, 'user', 'x', t(2.2))).tokens).toBe(3);
    expect((await store.getHistory(user))[0]?.tokens).toBe(3);
  });
});

describe('budget reads through outages', () => {
  let rig: OutageRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });
  const fill = async (store: TieredStore, user: string) => {
    await store.addMemory(user, 'user', 'u1', { meta: { t: 10 } });
    await store.addMemory(user, 'assistant', 'a1', { meta: { t: 10 } });
    await store.addMemory(user, 'tool', 't1', { meta: { t: 10 } });
    await store.addMemory(user, 'user', 'u2', { meta: { t: 10 } });
    await store.addMemory(user, 'assistant', 'a2', { meta: { t: 10 } });
  };

  for (const writeMode of ['write-through', 'write-behind'] as const) {
    for (const down of ['redis', 'postgres'] as const) {
      it(`${writeMode}: with ${down} down, a budget read still fits the budget and keeps tool units whole`, async () => {
        rig = await OutageRig.start({ countTokens, writeMode, historyLimit: 3 });
        const { store } = rig;
        const user = newUser();
        await fill(store, user);
        expect((await store.getHistory(user, { maxTokens: 25 })).map((m) => m.content)).toEqual(['u2', 'a2']);
        // In write-behind what Redis holds reaches PostgreSQL by the syncer: moved before Redis goes.
        await store.syncNow();
        await (down === 'redis' ? rig.redis : rig.pg).refuse();
        // Writes made during the outage count too.
        await store.addMemory(user, 'user', 'u3', { meta: { t: 10 } });
        const read = async (maxTokens: number) => (await store.getHistory(user, { maxTokens })).map((m) => m.content);
        expect(await read(25)).toEqual(['a2', 'u3']);
        expect(await read(30)).toEqual(['u2', 'a2', 'u3']);
        const wide = await read(1000);
        for (const m of await store.getHistory(user, { maxTokens: 1000 })) expect(m.tokens).toBe(10);
        expect(wide.at(-1)).toBe('u3');
        expect(wide[0]).not.toBe('t1');
        if (wide.includes('t1')) expect(wide.slice(wide.indexOf('t1') - 1, wide.indexOf('t1'))).toEqual(['a1']);
        await (down === 'redis' ? rig.redis : rig.pg).pass();
        await rig.recovered();
        expect(await read(1000)).toEqual(['u1', 'a1', 't1', 'u2', 'a2', 'u3']);
        expect(await read(35)).toEqual(['u2', 'a2', 'u3']);
      });
    }
  }
});
