import { readFileSync } from 'node:fs';
import { Telegraf, type Context } from 'telegraf';
import { channelPost, message } from 'telegraf/filters';
import type { Update, UserFromGetMe } from 'telegraf/types';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserMemory as GrammyUserMemory } from '../src/integrations/grammy.js';
import { isStoreError, PostgresAdapter, TieredStore, type Message } from '../src/index.js';
import { memory, UserMemory, type MemoryFlavor, type MemoryOptions } from '../src/integrations/telegraf.js';
import { ANONYMOUS_POLL, FAKE_BOT_INFO, FakeBotApi } from './helpers/fake-bot-api.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

type MyContext = Context & MemoryFlavor;

// Telegraf talks HTTP to a stand-in Bot API on 127.0.0.1: every call is real, none leaves the machine.
const api = new FakeBotApi('fake-token');
beforeAll(() => api.start());
afterAll(() => api.close());

/** A bot with botInfo set (no getMe), whose errors land in `errors` instead of the process. */
function testBot(store: TieredStore, options?: MemoryOptions<MyContext>) {
  const bot = new Telegraf<MyContext>('fake-token', { telegram: { apiRoot: api.apiRoot } });
  bot.botInfo = FAKE_BOT_INFO as UserFromGetMe;
  const errors: unknown[] = [];
  bot.catch((error) => {
    errors.push(error);
  });
  bot.use(memory(store, options));
  return { bot, errors };
}

let nextUpdate = 0;
function textFrom(userId: number, text: string, chatId = userId): Update {
  const chat = chatId === userId ? { id: chatId, type: 'private', first_name: 'U' } : { id: chatId, type: 'group', title: 'G' };
  return { update_id: ++nextUpdate, message: { message_id: nextUpdate, date: 0, chat, from: { id: userId, is_bot: false, first_name: 'U' }, text } } as Update;
}

const contents = (messages: Message[]) => messages.map((m) => `${m.role}:${m.content}`);
const sentSince = (from: number) =>
  api.calls
    .slice(from)
    .filter((c) => c.method === 'sendMessage')
    .map((c) => [c.payload.chat_id, c.payload.text]);

describe('Telegraf middleware: ctx.memory', () => {
  it('is bound to the sender: what a handler adds is that user’s history, and replies go through the Bot API', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, errors } = testBot(store);
    bot.on(message('text'), async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      const history = await ctx.memory.history();
      await ctx.reply(`${String(ctx.memory.userId)}:${history.length}`);
    });
    const from = api.calls.length;
    await bot.handleUpdate(textFrom(1, 'a'));
    await bot.handleUpdate(textFrom(2, 'b'));
    await bot.handleUpdate(textFrom(1, 'c'));
    expect(errors).toEqual([]);
    expect(contents(await store.getHistory(1))).toEqual(['user:a', 'user:c']);
    expect(contents(await store.getHistory('2'))).toEqual(['user:b']);
    expect(sentSince(from)).toEqual([
      [1, '1:1'],
      [2, '2:1'],
      [1, '1:2'],
    ]);
    await store.close();
  });

  it('is the same UserMemory class as the grammY plugin’s', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    let seen: unknown;
    bot.on(message('text'), (ctx) => {
      seen = ctx.memory;
    });
    await bot.handleUpdate(textFrom(5, 'x'));
    expect(UserMemory).toBe(GrammyUserMemory);
    expect(seen).toBeInstanceOf(UserMemory);
    await store.close();
  });

  it('is per user in groups, unless the userId option makes it one per chat', async () => {
    const store = new TieredStore({ logger: false });
    const { bot: perUser } = testBot(store);
    perUser.on(message('text'), (ctx) => ctx.memory.add('user', ctx.message.text));
    await perUser.handleUpdate(textFrom(1, 'in the group', -500));
    expect(contents(await store.getHistory(1))).toEqual(['user:in the group']);
    expect(await store.getHistory(-500)).toEqual([]);

    const { bot: perChat } = testBot(store, { userId: (ctx) => ctx.chat?.id });
    perChat.on(message('text'), (ctx) => ctx.memory.add('user', ctx.message.text));
    await perChat.handleUpdate(textFrom(1, 'from one', -600));
    await perChat.handleUpdate(textFrom(2, 'from two', -600));
    expect(contents(await store.getHistory(-600))).toEqual(['user:from one', 'user:from two']);
    await store.close();
  });

  it('falls back to the chat for updates without a sender (channel posts)', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = testBot(store);
    bot.on(channelPost('text'), (ctx) => ctx.memory.add('user', ctx.channelPost.text));
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
    }
    expect(await store.getEmailSubscribers()).toEqual([]);
    await store.close();
  });

  it('store errors reach bot.catch as coded StoreErrors and write nothing', async () => {
    const store = new TieredStore({ logger: false, limits: { contentBytes: 16 } });
    const { bot, errors } = testBot(store);
    bot.on(message('text'), (ctx) => ctx.memory.add('user', ctx.message.text));
    await bot.handleUpdate(textFrom(3, 'x'.repeat(17)));
    expect(errors).toEqual([expect.objectContaining({ code: 'CONTENT_TOO_LARGE' })]);
    expect(await store.getHistory(3)).toEqual([]);
    await store.close();
  });

  it('memory() refuses something that is not a store when the bot is built', () => {
    expect(() => memory(undefined as unknown as TieredStore)).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
  });

  it('imports only types from telegraf (and nothing of grammy at run time)', () => {
    for (const file of ['telegraf.ts', 'grammy.ts']) {
      const source = readFileSync(new URL(`../src/integrations/${file}`, import.meta.url), 'utf8');
      const js = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      }).outputText;
      expect(js).not.toMatch(/from ['"](telegraf|grammy)(\/[^'"]*)?['"]/);
    }
  });
});

describe('Telegraf middleware with a real Redis + PostgreSQL store', () => {
  const iso = isolation('telegraf middleware');
  afterAll(async () => {
    await cleanupRedis(redisUrl(), iso.keyPrefix);
    await cleanupPostgres(databaseUrl(), iso.schema);
  });

  it('keeps what handlers write durably: a restarted bot (and a PostgreSQL-only store) sees it', async () => {
    const store = makeStore('write-through', iso);
    const { bot, errors } = testBot(store);
    bot.on(message('text'), async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      await ctx.memory.add('assistant', `echo ${ctx.message.text}`);
      await ctx.memory.setBooking({ step: 'date', service: 'massage' });
      await ctx.reply(`echo ${ctx.message.text}`);
    });
    await bot.handleUpdate(textFrom(42, 'first'));
    await bot.handleUpdate(textFrom(42, 'second'));
    expect(errors).toEqual([]);
    await store.close();

    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    expect(contents(await durable.getHistory(42))).toEqual(['user:first', 'assistant:echo first', 'user:second', 'assistant:echo second']);
    await durable.close();

    const again = makeStore('write-through', iso);
    const { bot: restarted } = testBot(again);
    const seen: unknown[] = [];
    restarted.on(message('text'), async (ctx) => {
      seen.push(contents(await ctx.memory.history({ limit: 2 })), await ctx.memory.booking());
      await ctx.memory.forget();
      seen.push(await ctx.memory.history());
    });
    await restarted.handleUpdate(textFrom(42, '/whatever'));
    expect(seen).toEqual([['user:second', 'assistant:echo second'], { step: 'date', service: 'massage' }, []]);
    await again.close();
  });
});
