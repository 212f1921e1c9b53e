import { readFileSync } from 'node:fs';
import { Bot, BotError, type Context } from 'grammy';
import type { Update, UserFromGetMe } from 'grammy/types';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { memory, UserMemory, type MemoryFlavor, type MemoryOptions } from '../src/integrations/grammy.js';
import { isStoreError, PostgresAdapter, RedisAdapter, TieredStore, type Message } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { ANONYMOUS_POLL, FAKE_BOT_INFO } from './helpers/fake-bot-api.js';

type MyContext = Context & MemoryFlavor;

const botInfo: UserFromGetMe = { ...FAKE_BOT_INFO, id: 10, first_name: 'Plugin test bot', username: 'plugin_test_bot' };

interface Call {
  method: string;
  payload: Record<string, unknown>;
}

/** A bot that never touches the network: a transformer answers and records every API call. */
function testBot(store: TieredStore, options?: MemoryOptions<MyContext>): { bot: Bot<MyContext>; calls: Call[] } {
  const calls: Call[] = [];
  const bot = new Bot<MyContext>('fake-token', { botInfo });
  bot.api.config.use(async (_prev, method, payload) => {
    calls.push({ method, payload: payload as Record<string, unknown> });
    const result =
      method === 'sendMessage'
        ? {
            message_id: calls.length,
            date: 0,
            chat: { id: (payload as { chat_id: number }).chat_id, type: 'private' },
            text: (payload as { text: string }).text,
          }
        : true;
    return { ok: true, result } as never;
  });
  bot.use(memory(store, options));
  return { bot, calls };
}

let nextUpdate = 0;
function textFrom(userId: number, text: string, chatId = userId): Update {
  const chat = chatId === userId ? { id: chatId, type: 'private', first_name: 'U' } : { id: chatId, type: 'group', title: 'G' };
  return { update_id: ++nextUpdate, message: { message_id: nextUpdate, date: 0, chat, from: { id: userId, is_bot: false, first_name: 'U' }, text } } as Update;
}

const contents = (messages: Message[]) => messages.map((m) => `${m.role}:${m.content}`);

describe('grammY plugin: ctx.memory', () => {
  it('is bound to the sender: what a handler adds is that user’s history, and replies go through the API', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, calls } = testBot(store);
    bot.on('message:text', async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      const history = await ctx.memory.history();
      await ctx.reply(`${ctx.memory.userId}:${history.length}`);
    });
    await bot.handleUpdate(textFrom(1, 'a'));
    await bot.handleUpdate(textFrom(2, 'b'));
    await bot.handleUpdate(textFrom(1, 'c'));
    expect(contents(await store.getHistory(1))).toEqual(['user:a', 'user:c']);
    expect(contents(await store.getHistory('2'))).toEqual(['user:b']);
    expect(calls.map((c) => [c.payload.chat_id, c.payload.text])).toEqual([
      [1, '1:1'],
      [2, '2:1'],
      [1, '1:2'],
    ]);
    await store.close();
  });

  it('is per user in groups too: the sender, not the chat, unless the userId option says otherwise', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    bot.on('message:text', (ctx) => ctx.memory.add('user', ctx.message.text));
    await bot.handleUpdate(textFrom(1, 'in the group', -500));
    expect(contents(await store.getHistory(1))).toEqual(['user:in the group']);
    expect(await store.getHistory(-500)).toEqual([]);
    await store.close();
  });

  it('falls back to the chat for updates without a sender (channel posts)', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    bot.on('channel_post:text', (ctx) => ctx.memory.add('user', ctx.channelPost.text));
    await bot.handleUpdate({
      update_id: ++nextUpdate,
      channel_post: { message_id: 1, date: 0, chat: { id: -100123, type: 'channel', title: 'C' }, text: 'news' },
    } as Update);
    expect(contents(await store.getHistory(-100123))).toEqual(['user:news']);
    await store.close();
  });

  it('without a sender or chat, every method rejects with INVALID_USER_ID and nothing is written', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    let seen: UserMemory | undefined;
    bot.on('poll', (ctx) => {
      seen = ctx.memory;
    });
    await bot.handleUpdate({
      update_id: ++nextUpdate,
      poll: ANONYMOUS_POLL,
    } as unknown as Update);
    expect(seen).toBeInstanceOf(UserMemory);
    expect(seen?.userId).toBeUndefined();
    const m = seen as UserMemory;
    const calls = [
      m.add('user', 'x'),
      m.history(),
      m.clear(),
      m.phone(),
      m.setPhone('+79991234567'),
      m.booking(),
      m.setBooking({ a: 1 }),
      m.subscribe(),
      m.unsubscribe(),
      m.isSubscribed(),
      m.forget(),
    ];
    for (const result of await Promise.allSettled(calls)) {
      expect(result.status).toBe('rejected');
      const error = (result as PromiseRejectedResult).reason as Error;
      expect(isStoreError(error) && error.code).toBe('INVALID_USER_ID');
      expect(error.message).toMatch(/ctx\.from nor ctx\.chat/);
    }
    expect(await store.getEmailSubscribers()).toEqual([]);
    await store.close();
  });

  it('maps every method to the store for the bound user only', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    const results: unknown[] = [];
    bot.on('message:text', async (ctx) => {
      const m = ctx.memory;
      await m.add('user', 'hi', { meta: { lang: 'en' } });
      await m.add('assistant', 'hello');
      results.push(contents(await m.history({ limit: 1 })), await m.setPhone('+7 (999) 123-45-67'), await m.phone());
      await m.setBooking({ service: 'haircut', date: '2026-12-01' });
      results.push(await m.booking());
      await m.subscribe();
      results.push(await m.isSubscribed(), await store.getEmailSubscribers());
      await m.unsubscribe();
      results.push(await m.isSubscribed());
      await m.clear();
      results.push(await m.history(), await m.phone());
      await m.forget();
      results.push(await m.phone(), await m.booking());
    });
    await store.addMemory(8, 'user', 'bystander');
    await store.setUserPhone(8, '+15550000008');
    await bot.handleUpdate(textFrom(7, 'go'));
    expect(results).toEqual([
      ['assistant:hello'],
      '+79991234567',
      '+79991234567',
      { service: 'haircut', date: '2026-12-01' },
      true,
      ['7'],
      false,
      [],
      '+79991234567',
      null,
      null,
    ]);
    expect(contents(await store.getHistory(8))).toEqual(['user:bystander']);
    expect(await store.getUserPhone(8)).toBe('+15550000008');
    await store.close();
  });

  it('the userId option chooses whose memory it is: one per group chat', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store, { userId: (ctx) => ctx.chat?.id });
    bot.on('message:text', (ctx) => ctx.memory.add('user', ctx.message.text));
    await bot.handleUpdate(textFrom(1, 'from one', -500));
    await bot.handleUpdate(textFrom(2, 'from two', -500));
    expect(contents(await store.getHistory(-500))).toEqual(['user:from one', 'user:from two']);
    expect(await store.getHistory(1)).toEqual([]);
    await store.close();
  });

  it('store errors reach the bot as coded errors (a BotError around a StoreError) and write nothing', async () => {
    const store = new TieredStore({ logger: false, limits: { contentBytes: 16 } });
    const { bot } = testBot(store);
    bot.on('message:text', (ctx) => ctx.memory.add('user', ctx.message.text));
    const failure = await bot.handleUpdate(textFrom(3, 'x'.repeat(17))).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BotError);
    expect((failure as BotError).error).toMatchObject({ code: 'CONTENT_TOO_LARGE' });
    expect(await store.getHistory(3)).toEqual([]);
    await store.close();
  });

  it('memory() refuses something that is not a store, when the bot is built rather than on the first update', () => {
    expect(() => memory(undefined as unknown as TieredStore)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });

  it('imports only types from grammy, so the library never loads grammy itself', () => {
    const source = readFileSync(new URL('../src/integrations/grammy.ts', import.meta.url), 'utf8');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    }).outputText;
    expect(source).toMatch(/from 'grammy'/);
    expect(js).not.toMatch(/['"]grammy['"]/);
  });
});

describe('grammY plugin with a real Redis + PostgreSQL store', () => {
  const iso = isolation('grammy plugin');
  const open = () =>
    new TieredStore({
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix: iso.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }),
      logger: false,
    });

  afterAll(async () => {
    await cleanupRedis(redisUrl(), iso.keyPrefix);
    await cleanupPostgres(databaseUrl(), iso.schema);
  });

  it('keeps what handlers write durably: a new store (and a PostgreSQL-only one) sees it', async () => {
    const store = open();
    const { bot } = testBot(store);
    bot.on('message:text', async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      await ctx.memory.add('assistant', `echo ${ctx.message.text}`);
      await ctx.memory.setPhone('79991234567');
      await ctx.memory.setBooking({ step: 'date', service: 'massage' });
      await ctx.memory.subscribe();
    });
    await bot.handleUpdate(textFrom(42, 'first'));
    await bot.handleUpdate(textFrom(42, 'second'));
    await store.close();

    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    expect(contents(await durable.getHistory(42))).toEqual(['user:first', 'assistant:echo first', 'user:second', 'assistant:echo second']);
    await durable.close();

    const again = open();
    const { bot: restarted } = testBot(again);
    const seen: unknown[] = [];
    restarted.on('message:text', async (ctx) => {
      seen.push(contents(await ctx.memory.history({ limit: 2 })), await ctx.memory.phone(), await ctx.memory.booking(), await ctx.memory.isSubscribed());
      await ctx.memory.forget();
      seen.push(await ctx.memory.history());
    });
    await restarted.handleUpdate(textFrom(42, '/whatever'));
    expect(seen).toEqual([['user:second', 'assistant:echo second'], '+79991234567', { step: 'date', service: 'massage' }, true, []]);
    await again.close();
  });
});
