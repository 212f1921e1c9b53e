import { readFileSync } from 'node:fs';
import { Telegraf, type Context } from 'telegraf';
import { channelPost, editedMessage, message } from 'telegraf/filters';
import type { Update, UserFromGetMe } from 'telegraf/types';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserMemory as GrammyUserMemory } from '../src/integrations/grammy.js';
import { isStoreError, PostgresAdapter, TieredStore, type Message } from '../src/index.js';
import { memory, TELEGRAM_EDIT_WINDOW, UserMemory, type MemoryFlavor, type MemoryOptions } from '../src/integrations/telegraf.js';
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

/** A text in a private chat or a forum supergroup, optionally in topic `threadId`. */
function topicText(userId: number, text: string, options: { threadId?: number; chatId?: number; forum?: boolean } = {}): Update {
  const chatId = options.chatId ?? userId;
  const chat = options.forum ? { id: chatId, type: 'supergroup', title: 'G', is_forum: true } : { id: chatId, type: 'private', first_name: 'U' };
  const thread = options.threadId === undefined ? {} : { message_thread_id: options.threadId, is_topic_message: true };
  const message = { message_id: ++nextUpdate, date: 0, chat, from: { id: userId, is_bot: false, first_name: 'U' }, text, ...thread };
  return { update_id: nextUpdate, message } as Update;
}

function editOf(original: Update, text: string): Update {
  const { message } = original as unknown as { message: Record<string, unknown> };
  return { update_id: ++nextUpdate, edited_message: { ...message, edit_date: 1, text } } as Update;
}

describe('Telegraf middleware, v2: Telegram edits and topics', () => {
  function v2Bot(store: TieredStore, options?: MemoryOptions<MyContext>) {
    const { bot, errors } = testBot(store, options);
    const editsSeen: string[][] = [];
    bot.on(message('text'), async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      await ctx.reply(`thread ${ctx.memory.thread}`);
    });
    bot.on(editedMessage('text'), async (ctx) => {
      editsSeen.push(contents(await ctx.memory.history()));
    });
    return { bot, errors, editsSeen };
  }

  it('an edited_message updates the stored copy of the message (tagged with its Telegram ids) before handlers run', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, errors, editsSeen } = v2Bot(store);
    const original = topicText(80, 'two coffees');
    await bot.handleUpdate(original);
    await bot.handleUpdate(topicText(80, 'to go'));
    const [before] = await store.getHistory(80);
    expect(before?.meta).toEqual({ telegram: { messageId: (original as { message: { message_id: number } }).message.message_id, chatId: 80 } });
    await bot.handleUpdate(editOf(original, 'three coffees'));
    const after = await store.getHistory(80);
    expect(contents(after)).toEqual(['user:three coffees', 'user:to go']);
    expect(after[0]?.id).toBe(before?.id);
    expect(after[0]?.updatedAt).toBeInstanceOf(Date);
    expect(editsSeen).toEqual([['user:three coffees', 'user:to go']]);
    expect(errors).toEqual([]);
    await store.close();
  });

  it('an edit of an unknown message changes nothing; followEdits: false leaves edits to ctx.memory.edit', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, errors, editsSeen } = v2Bot(store);
    await bot.handleUpdate(topicText(81, 'stays'));
    await bot.handleUpdate(editOf(topicText(81, 'never stored'), 'edited'));
    expect(contents(await store.getHistory(81))).toEqual(['user:stays']);
    expect(editsSeen).toEqual([['user:stays']]);

    const { bot: manual } = testBot(store, { followEdits: false });
    const results: unknown[] = [];
    manual.on(message('text'), (ctx) => ctx.memory.add('user', ctx.message.text));
    manual.on(editedMessage('text'), async (ctx) => {
      results.push(contents(await ctx.memory.history()));
      const updated = await ctx.memory.edit(ctx.editedMessage.message_id, ctx.editedMessage.text.toUpperCase());
      results.push(updated?.content, await ctx.memory.edit(987654321, 'x'));
    });
    const original = topicText(82, 'quiet');
    await manual.handleUpdate(original);
    await manual.handleUpdate(editOf(original, 'loud'));
    expect(results).toEqual([['user:quiet'], 'LOUD', null]);
    expect(errors).toEqual([]);
    await store.close();
  });

  it(`does not follow an edit of a message older than the thread's newest ${TELEGRAM_EDIT_WINDOW}`, async () => {
    const store = new TieredStore({ logger: false, historyLimit: 1000 });
    const { bot } = v2Bot(store);
    const old = topicText(83, 'old');
    await bot.handleUpdate(old);
    for (let i = 0; i < TELEGRAM_EDIT_WINDOW; i++) await store.addMemory(83, 'assistant', `filler ${i}`);
    await bot.handleUpdate(editOf(old, 'too late'));
    expect((await store.getHistory(83, { limit: 1000 }))[0]?.content).toBe('old');
    await store.close();
  });

  it('puts topic messages in thread String(message_thread_id), others in main, replying through the Bot API', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, errors } = v2Bot(store);
    const from = api.calls.length;
    await bot.handleUpdate(topicText(84, 'forum topic', { threadId: 42, chatId: -84, forum: true }));
    await bot.handleUpdate(topicText(84, 'private topic', { threadId: 7 }));
    await bot.handleUpdate(topicText(84, 'no topic'));
    expect(contents(await store.getHistory(84, { thread: '42' }))).toEqual(['user:forum topic']);
    expect(contents(await store.getHistory(84, { thread: '7' }))).toEqual(['user:private topic']);
    expect(contents(await store.getHistory(84))).toEqual(['user:no topic']);
    expect(sentSince(from)).toEqual([
      [-84, 'thread 42'],
      [84, 'thread 7'],
      [84, 'thread main'],
    ]);
    const edited = topicText(84, 'in 42 again', { threadId: 42, chatId: -84, forum: true });
    await bot.handleUpdate(edited);
    await bot.handleUpdate(editOf(edited, 'in 42, edited'));
    expect(contents(await store.getHistory(84, { thread: '42' }))).toEqual(['user:forum topic', 'user:in 42, edited']);
    expect(errors).toEqual([]);
    await store.close();
  });

  it('the thread option overrides the mapping; undefined means main', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, errors } = v2Bot(store, { thread: (ctx) => (ctx.chat?.type === 'supergroup' ? 'groups' : undefined) });
    await bot.handleUpdate(topicText(85, 'forum topic', { threadId: 42, chatId: -85, forum: true }));
    await bot.handleUpdate(topicText(85, 'private topic', { threadId: 7 }));
    expect(contents(await store.getHistory(85, { thread: 'groups' }))).toEqual(['user:forum topic']);
    expect(contents(await store.getHistory(85))).toEqual(['user:private topic']);
    expect((await store.listThreads(85)).threads.map((t) => t.id).sort()).toEqual(['groups', 'main']);
    expect(errors).toEqual([]);
    await store.close();
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
