import { readFileSync } from 'node:fs';
import { Bot, BotError, type Context } from 'grammy';
import type { Update, UserFromGetMe } from 'grammy/types';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memory, TELEGRAM_EDIT_WINDOW, UserMemory, type MemoryFlavor, type MemoryOptions } from '../src/integrations/grammy.js';
import { isStoreError, PostgresAdapter, RedisAdapter, TieredStore, type Message } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { ANONYMOUS_POLL, FAKE_BOT_INFO, FakeBotApi } from './helpers/fake-bot-api.js';

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

/** A message update in a chat of the given kind, optionally in a topic (`message_thread_id`). */
function messageIn(
  kind: 'private' | 'forum' | 'supergroup',
  userId: number,
  text: string,
  options: { threadId?: number; topic?: boolean; chatId?: number } = {},
): Update {
  const chatId = options.chatId ?? (kind === 'private' ? userId : -1000 - userId);
  const chat =
    kind === 'private'
      ? { id: chatId, type: 'private', first_name: 'U' }
      : { id: chatId, type: 'supergroup', title: 'G', ...(kind === 'forum' ? { is_forum: true } : {}) };
  const thread = options.threadId === undefined ? {} : { message_thread_id: options.threadId, ...(options.topic === false ? {} : { is_topic_message: true }) };
  const message = { message_id: ++nextUpdate, date: 0, chat, from: { id: userId, is_bot: false, first_name: 'U' }, text, ...thread };
  return { update_id: nextUpdate, message } as Update;
}

/** The `edited_message` update for a message sent earlier as `original`, now reading `text`. */
function editOf(original: Update, text: string): Update {
  const { message } = original as unknown as { message: Record<string, unknown> };
  return { update_id: ++nextUpdate, edited_message: { ...message, edit_date: 1, text } } as Update;
}

describe('grammY plugin, v2: Telegram edits and topics (replies through the stand-in Bot API)', () => {
  const api = new FakeBotApi('fake-token');
  beforeAll(() => api.start());
  afterAll(() => api.close());

  /** A bot whose API calls go over HTTP to the stand-in; its handler stores each text and answers with the thread. */
  function topicBot(store: TieredStore, options?: MemoryOptions<MyContext>) {
    const bot = new Bot<MyContext>('fake-token', { botInfo, client: { apiRoot: api.apiRoot } });
    bot.use(memory(store, options));
    const editsSeen: string[][] = [];
    bot.command('clear', (ctx) => ctx.memory.clear());
    bot.on('message:text', async (ctx) => {
      await ctx.memory.add('user', ctx.message.text);
      await ctx.reply(`thread ${ctx.memory.thread}`);
    });
    bot.on('edited_message', async (ctx) => {
      editsSeen.push(contents(await ctx.memory.history()));
    });
    return { bot, editsSeen };
  }

  it('stores a user message with its Telegram ids, and an edited_message updates that stored copy before handlers run', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, editsSeen } = topicBot(store);
    const original = messageIn('private', 50, 'I want a haircut on Friday');
    await bot.handleUpdate(original);
    await bot.handleUpdate(messageIn('private', 50, 'at 10'));
    const [before] = await store.getHistory(50);
    const messageId = (original as { message: { message_id: number } }).message.message_id;
    expect(before?.meta).toEqual({ telegram: { messageId, chatId: 50 } });
    expect(await api.waitForMessage((m) => m.chatId === 50 && m.text === 'thread main')).toBeDefined();

    await bot.handleUpdate(editOf(original, 'I want a haircut on Saturday'));
    const after = await store.getHistory(50);
    expect(contents(after)).toEqual(['user:I want a haircut on Saturday', 'user:at 10']);
    expect(after[0]?.id).toBe(before?.id);
    expect(after[0]?.meta).toEqual(before?.meta);
    expect(after[0]?.updatedAt).toBeInstanceOf(Date);
    expect(editsSeen).toEqual([['user:I want a haircut on Saturday', 'user:at 10']]);
    await store.close();
  });

  it('merges the Telegram ids into the meta a handler gives, which wins on conflicts', async () => {
    const store = new TieredStore({ logger: false });
    const bot = new Bot<MyContext>('fake-token', { botInfo, client: { apiRoot: api.apiRoot } });
    bot.use(memory(store));
    bot.on('message:text', async (ctx) => {
      await ctx.memory.add('user', ctx.message.text, { meta: { lang: 'en', telegram: { chatId: 1 } } });
      await ctx.memory.add('assistant', 'ok');
    });
    const update = messageIn('private', 51, 'hi');
    await bot.handleUpdate(update);
    const [user, assistant] = await store.getHistory(51);
    expect(user?.meta).toEqual({ lang: 'en', telegram: { messageId: (update as { message: { message_id: number } }).message.message_id, chatId: 1 } });
    expect(assistant?.meta).toBeUndefined();
    await store.close();
  });

  it('an edit of a message it never stored (or stored in another chat) changes nothing and still reaches the handlers', async () => {
    const store = new TieredStore({ logger: false });
    const { bot, editsSeen } = topicBot(store);
    const stored = messageIn('private', 52, 'kept as is');
    await bot.handleUpdate(stored);
    const unknown = messageIn('private', 52, 'never stored');
    await bot.handleUpdate(editOf(unknown, 'edited'));
    // The same message_id in another chat is another message.
    const { message } = stored as unknown as { message: Record<string, unknown> };
    await bot.handleUpdate({
      update_id: ++nextUpdate,
      edited_message: { ...message, chat: { id: -777, type: 'group', title: 'G' }, text: 'not this one' },
    } as Update);
    const history = await store.getHistory(52);
    expect(contents(history)).toEqual(['user:kept as is']);
    expect(history[0]?.updatedAt).toBeUndefined();
    expect(editsSeen).toEqual([['user:kept as is'], ['user:kept as is']]);
    await store.close();
  });

  it(`follows edits only within the newest ${TELEGRAM_EDIT_WINDOW} messages of the thread`, async () => {
    const store = new TieredStore({ logger: false, historyLimit: 1000 });
    const { bot } = topicBot(store);
    const old = messageIn('private', 53, 'old');
    await bot.handleUpdate(old);
    for (let i = 0; i < TELEGRAM_EDIT_WINDOW; i++) await store.addMemory(53, 'assistant', `filler ${i}`);
    await bot.handleUpdate(editOf(old, 'too late'));
    expect((await store.getHistory(53, { limit: 1000 }))[0]?.content).toBe('old');
    await store.close();
  });

  it('ctx.memory.edit(telegramMessageId, text) returns the updated message, or null when there is no stored copy', async () => {
    const store = new TieredStore({ logger: false });
    const bot = new Bot<MyContext>('fake-token', { botInfo, client: { apiRoot: api.apiRoot } });
    bot.use(memory(store, { followEdits: false }));
    const results: (Message | null)[] = [];
    bot.on('message:text', (ctx) => ctx.memory.add('user', ctx.message.text));
    bot.on('edited_message:text', async (ctx) => {
      results.push(await ctx.memory.edit(ctx.editedMessage.message_id, `${ctx.editedMessage.text} (edited)`));
      results.push(await ctx.memory.edit(123456789, 'nothing'));
    });
    const original = messageIn('private', 54, 'first');
    await bot.handleUpdate(original);
    await bot.handleUpdate(editOf(original, 'second'));
    expect(results.map((m) => m && { content: m.content, thread: m.thread, edited: m.updatedAt instanceof Date })).toEqual([
      { content: 'second (edited)', thread: 'main', edited: true },
      null,
    ]);
    expect(contents(await store.getHistory(54))).toEqual(['user:second (edited)']);
    await store.close();
  });

  it('puts forum-topic and private-chat-topic messages in thread String(message_thread_id), others in main', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = topicBot(store);
    await bot.handleUpdate(messageIn('forum', 60, 'in topic 42', { threadId: 42, chatId: -60 }));
    await bot.handleUpdate(messageIn('forum', 60, 'in General', { chatId: -60 }));
    await bot.handleUpdate(messageIn('private', 60, 'in private topic 7', { threadId: 7 }));
    await bot.handleUpdate(messageIn('private', 60, 'plain private'));
    // A reply chain in a supergroup without topics is not a topic.
    await bot.handleUpdate(messageIn('supergroup', 60, 'a reply', { threadId: 99, topic: false, chatId: -61 }));
    expect(contents(await store.getHistory(60, { thread: '42' }))).toEqual(['user:in topic 42']);
    expect(contents(await store.getHistory(60, { thread: '7' }))).toEqual(['user:in private topic 7']);
    expect(contents(await store.getHistory(60))).toEqual(['user:in General', 'user:plain private', 'user:a reply']);
    expect(contents(await store.getHistory(60, { thread: '99' }))).toEqual([]);
    const sent = api.calls.filter((c) => c.method === 'sendMessage' && (c.payload.chat_id === -60 || c.payload.chat_id === 60)).map((c) => c.payload.text);
    expect(sent).toEqual(['thread 42', 'thread main', 'thread 7', 'thread main']);
    const { threads } = await store.listThreads(60);
    expect(threads.map((t) => [t.id, t.messages]).sort()).toEqual([
      ['42', 1],
      ['7', 1],
      ['main', 3],
    ]);
    await store.close();
  });

  it('an edit in a topic finds the message in that topic; ctx.memory.clear() empties only the update’s thread', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = topicBot(store);
    const inTopic = messageIn('forum', 61, 'topic text', { threadId: 5, chatId: -62 });
    await bot.handleUpdate(inTopic);
    await bot.handleUpdate(messageIn('forum', 61, 'general text', { chatId: -62 }));
    await bot.handleUpdate(editOf(inTopic, 'topic text, edited'));
    expect(contents(await store.getHistory(61, { thread: '5' }))).toEqual(['user:topic text, edited']);
    const clear = messageIn('forum', 61, '/clear', { threadId: 5, chatId: -62 });
    (clear as unknown as { message: Record<string, unknown> }).message.entities = [{ type: 'bot_command', offset: 0, length: 6 }];
    await bot.handleUpdate(clear);
    expect(await store.getHistory(61, { thread: '5' })).toEqual([]);
    expect(contents(await store.getHistory(61))).toEqual(['user:general text']);
    await store.close();
  });

  it('the thread option overrides the mapping; undefined means main', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = topicBot(store, { thread: (ctx) => (ctx.chat?.type === 'private' ? undefined : `chat${String(-(ctx.chat?.id ?? 0))}`) });
    await bot.handleUpdate(messageIn('forum', 70, 'topic, but one thread per group', { threadId: 42, chatId: -71 }));
    await bot.handleUpdate(messageIn('private', 70, 'private topic, but main', { threadId: 8 }));
    expect(contents(await store.getHistory(70, { thread: 'chat71' }))).toEqual(['user:topic, but one thread per group']);
    expect(contents(await store.getHistory(70))).toEqual(['user:private topic, but main']);
    expect(await store.getHistory(70, { thread: '42' })).toEqual([]);
    expect(await store.getHistory(70, { thread: '8' })).toEqual([]);
    await store.close();
  });

  it('a thread id the store refuses reaches the bot as a coded error and writes nothing', async () => {
    const store = new TieredStore({ logger: false });
    const { bot } = topicBot(store, { thread: () => 'not a valid id!' });
    const failure = await bot.handleUpdate(messageIn('private', 72, 'hi')).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BotError);
    expect(isStoreError((failure as BotError).error)).toBe(true);
    expect((await store.listThreads(72)).threads).toEqual([]);
    await store.close();
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
