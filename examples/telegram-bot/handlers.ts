import { Bot, InlineKeyboard, Keyboard, type BotConfig, type BotError, type Context } from 'grammy';
import type { UserFromGetMe } from 'grammy/types';
import { memory, type MemoryFlavor } from '../../src/integrations/grammy.js';
import { isStoreError, ValidationError, type Message, type SummarizeInput, type TieredStore } from '../../src/index.js';
import { booking } from './booking.js';

export type BotContext = Context & MemoryFlavor;

export interface BotOptions {
  /** Known bot info: skips getMe (console mode, tests). */
  botInfo?: UserFromGetMe;
  /** Root URL of the Bot API server (a local one in tests). */
  apiRoot?: string;
  /** Console mode: /start also says how to share a contact and press buttons by typing; answers are shown growing as they stream. */
  console?: boolean;
  /** Where console-mode answers stream from. @default standInStream(40) */
  stream?: ReplyStreamer;
}

export const COMMANDS = [
  { command: 'start', description: 'What I can do' },
  { command: 'history', description: 'Your last 10 messages' },
  { command: 'new', description: 'Start a new conversation' },
  { command: 'threads', description: 'Your conversations' },
  { command: 'summary', description: 'The summary of this conversation' },
  { command: 'phone', description: 'Share your phone number' },
  { command: 'book', description: 'Book a service (service, then date)' },
  { command: 'booking', description: 'Show your booking' },
  { command: 'cancel', description: 'Cancel the booking in progress' },
  { command: 'subscribe', description: 'Subscribe to updates' },
  { command: 'unsubscribe', description: 'Stop the updates' },
  { command: 'forget', description: 'Erase everything I know about you' },
  { command: 'status', description: 'Health of the storage tiers' },
];

const PHONE_BUTTON = 'Share my phone number';

/**
 * Streams an answer as it is generated: each value is the text so far. Plug an LLM's stream in
 * here; without one the bot uses {@link standInStream}.
 */
export type ReplyStreamer = (answer: string) => AsyncIterable<string>;

/**
 * A deterministic stand-in for an LLM summariser (no LLM is configured in this example): the
 * previous summary, then the first words of each message. Plug your model in as the store's
 * `summarize` option.
 */
export function standInSummarize({ summary, messages }: SummarizeInput): string {
  const lines = messages.map((m) => `${m.role === 'user' ? 'You' : 'Bot'}: ${m.content.split(/\s+/).slice(0, 6).join(' ')}`);
  return [...(summary === null ? [] : [summary]), ...lines].join('\n');
}

/**
 * A deterministic stand-in for an LLM's stream (no LLM is configured in this example): the answer
 * a few words at a time, `delayMs` apart.
 */
export function standInStream(delayMs: number, wordsPerChunk = 4): ReplyStreamer {
  return async function* (answer) {
    const words = answer.split(' ');
    for (let end = wordsPerChunk; end < words.length; end += wordsPerChunk) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      yield words.slice(0, end).join(' ');
    }
    yield answer;
  };
}

/** The example bot: every handler, used as it is by long polling and by the console mode. */
export function createBot(token: string, store: TieredStore, options: BotOptions = {}): Bot<BotContext> {
  const config: BotConfig<BotContext> = {};
  if (options.botInfo) config.botInfo = options.botInfo;
  if (options.apiRoot) config.client = { apiRoot: options.apiRoot };
  const bot = new Bot<BotContext>(token, config);
  // The conversation each chat is in, set by /new. In process memory on purpose: the plugin's
  // `thread` option is synchronous (no store read on every update), and the booking data stays
  // the booking flow's alone (it replaces that object whole). After a restart a chat is back in
  // 'main'; /threads still lists every conversation. Chats without an entry follow Telegram topics.
  const currentThread = new Map<number, string>();
  const stream = options.stream ?? standInStream(40);
  bot.use(
    commandEntity,
    memory(store, {
      thread: (ctx) => {
        const chosen = ctx.chat ? currentThread.get(ctx.chat.id) : undefined;
        return chosen ?? (ctx.msg?.is_topic_message ? String(ctx.msg.message_thread_id) : undefined);
      },
    }),
  );
  bot.use(booking);

  bot.command('start', (ctx) => ctx.reply(welcome(ctx.from?.first_name, options.console === true)));

  bot.command('history', async (ctx) => {
    const messages = await ctx.memory.history({ limit: 10 });
    if (messages.length === 0) return ctx.reply('No messages yet. Say something, then try /history again.');
    const lines = messages.map((m, i) => `${i + 1}. ${speaker(m)}: ${clip(m.content, 120)}`);
    return ctx.reply([`Your last ${count(messages.length, 'message')}, oldest first:`, ...lines].join('\n'));
  });

  bot.command('summary', async (ctx) => {
    // The summary the background runs keep; none yet (a short conversation): one now.
    const summary = (await ctx.memory.context({ maxTokens: 4000 })).summary ?? (await ctx.memory.summarizeNow());
    if (summary === null) return ctx.reply('Nothing to summarise yet. Say something, then try /summary again.');
    return ctx.reply(`Summary of this conversation so far:\n${summary}`);
  });

  bot.command('new', async (ctx) => {
    const thread = `t-${Date.now()}`;
    const startedAt = new Date().toISOString().slice(0, 16).replace('T', ' ');
    // The title makes the new conversation show in /threads before its first message.
    await ctx.memory.store.setThreadTitle(ctx.memory.userId ?? ctx.chat.id, thread, `Started ${startedAt} UTC`);
    currentThread.set(ctx.chat.id, thread);
    return ctx.reply(`New conversation started (${thread}). What you say now goes there; /threads lists your conversations.`);
  });

  bot.command('threads', async (ctx) => {
    const { threads } = await ctx.memory.threads({ limit: 20 });
    if (threads.length === 0) return ctx.reply('No conversations yet. Say something, or /new starts one.');
    const lines = threads.map(
      (t, i) =>
        `${i + 1}. ${t.title ?? (t.id === 'main' ? 'Main conversation' : t.id)} (${t.id}): ${count(t.messages, 'message')}${t.id === ctx.memory.thread ? ' <- current' : ''}`,
    );
    return ctx.reply([`Your conversations, most recent first:`, ...lines, '', '/new starts another one.'].join('\n'));
  });

  bot.command('phone', async (ctx) => {
    const current = await ctx.memory.phone();
    const intro = current ? `I have your number as ${current}. To change it, tap the button below.` : 'Tap the button below to share your phone number.';
    return ctx.reply(options.console ? `${intro}\n(In the console, type /contact +79991234567 instead.)` : intro, { reply_markup: phoneKeyboard() });
  });

  bot.on('message:contact', async (ctx) => {
    const { contact } = ctx.message;
    if (contact.user_id !== undefined && contact.user_id !== ctx.from.id) {
      return ctx.reply("That is someone else's contact. Please share your own with the button from /phone.");
    }
    const phone = await ctx.memory.setPhone(contact.phone_number);
    return ctx.reply(`Thanks! I saved your phone number as ${phone}.`, { reply_markup: { remove_keyboard: true } });
  });

  bot.command('subscribe', async (ctx) => {
    if (await ctx.memory.isSubscribed()) return ctx.reply('You are already subscribed. /unsubscribe stops the updates.');
    await ctx.memory.subscribe();
    return ctx.reply('Subscribed: you will get our updates. /unsubscribe stops them.');
  });

  bot.command('unsubscribe', async (ctx) => {
    if (!(await ctx.memory.isSubscribed())) return ctx.reply('You are not subscribed. /subscribe starts the updates.');
    await ctx.memory.unsubscribe();
    return ctx.reply('Unsubscribed: no more updates. /subscribe brings them back.');
  });

  bot.command('forget', (ctx) =>
    ctx.reply('Erase everything I know about you: messages, phone number, booking and subscription? This cannot be undone.', {
      reply_markup: new InlineKeyboard().text('Yes, forget me', 'forget:yes').text('Cancel', 'forget:no'),
    }),
  );

  bot.callbackQuery(['forget:yes', 'forget:no'], async (ctx) => {
    const yes = ctx.callbackQuery.data === 'forget:yes';
    if (yes) await ctx.memory.forget();
    // A press older than 15 s (the bot was down) can no longer be answered; the reply below still goes out.
    await ctx.answerCallbackQuery({ text: yes ? 'Erased' : 'Cancelled' }).catch(() => undefined);
    // Cosmetic: the buttons go away; a client that cannot edit the message changes nothing else.
    if (ctx.callbackQuery.message) await ctx.editMessageReplyMarkup().catch(() => undefined);
    const text = yes ? 'Done: I have forgotten you. Your messages, phone number, booking and subscription are erased.' : 'OK, I keep everything.';
    return ctx.api.sendMessage(ctx.chat?.id ?? ctx.from.id, text);
  });

  bot.on('callback_query', (ctx) => ctx.answerCallbackQuery({ text: 'That button is no longer in use.' }));

  bot.command('status', (ctx) => ctx.reply(status(store)));

  bot.hears(/^\//, (ctx) =>
    ctx.reply(`I do not know ${(ctx.msg.text ?? ctx.msg.caption ?? '').split(/\s/)[0] || 'that command'}. /start lists what I can do.`),
  );

  bot.on('message:text', async (ctx) => {
    const text = ctx.message.text;
    if (looksLikePhone(text)) {
      const how = options.console ? 'type /contact followed by the number' : `tap "${PHONE_BUTTON}" below`;
      return ctx.reply(`That looks like a phone number. I only save a number you share through Telegram, so I know it is yours: ${how}.`, {
        reply_markup: phoneKeyboard(),
      });
    }
    await ctx.memory.add('user', text);
    const history = await ctx.memory.history();
    const before = history.slice(0, -1).findLast((m) => m.role === 'user');
    const reply = before
      ? `I have ${count(history.length, 'message')} from our chat. You said before: "${clip(before.content, 200)}"`
      : `I have ${count(history.length, 'message')} from our chat: this one. Say something else and I will remind you of it; /history shows them all.`;
    if (options.console) return streamAnswer(ctx, stream(reply));
    await ctx.reply(reply);
    await ctx.memory.add('assistant', reply);
  });

  bot.on('message', (ctx) => ctx.reply('I understand text messages (and a contact shared after /phone). /start lists what I can do.'));

  bot.catch(handleError);
  return bot;
}

/**
 * Console mode: writes a streamed answer through a store draft, visible in the history at once
 * (status 'streaming'), updated as text arrives, then finished as a normal message. Each step is
 * shown with sendMessageDraft (the Bot API's streaming preview), then the message is sent. If
 * anything fails mid-stream the draft is kept as 'aborted' with the text so far. (On Telegram the
 * bot answers in one message: sendMessageDraft is for private chats only, and a bot has to opt in.)
 */
async function streamAnswer(ctx: BotContext, parts: AsyncIterable<string>): Promise<void> {
  const draft = await ctx.memory.startDraft('assistant');
  const chatId = ctx.chat?.id;
  try {
    let text = '';
    for await (const soFar of parts) {
      text = soFar;
      draft.update(text);
      if (chatId !== undefined) await ctx.api.sendMessageDraft(chatId, draftNumber(draft.id), text);
    }
    await draft.finish(text);
    await ctx.reply(text);
  } catch (error) {
    await draft.abort().catch(() => undefined);
    throw error;
  }
}

/** sendMessageDraft wants a non-zero integer id per draft: one made from the store's draft id. */
function draftNumber(id: string): number {
  let n = 0;
  for (const c of id) n = (n * 31 + c.charCodeAt(0)) % 2_147_483_647;
  return n || 1;
}

/** Telegram marks a command with a bot_command entity; a Bot API stand-in that leaves it out still gets commands. */
function commandEntity(ctx: BotContext, next: () => Promise<void>): Promise<void> {
  const message = ctx.message;
  const command = message?.text && !message.entities ? /^\/\w+(@\w+)?/.exec(message.text) : null;
  if (message && command) message.entities = [{ type: 'bot_command', offset: 0, length: command[0].length }];
  return next();
}

function phoneKeyboard(): Keyboard {
  return new Keyboard().requestContact(PHONE_BUTTON).resized().oneTime();
}

/** Logs a failed update and tells the user something useful instead of going silent. */
export async function handleError(err: BotError<BotContext>): Promise<void> {
  const { ctx, error } = err;
  // Bad input (an invalid phone, an oversized message) is the user's, and the reply below explains it:
  // not a failure of the bot, so nothing on stderr. Everything else is logged.
  if (!(error instanceof ValidationError)) {
    console.error(`update ${ctx.update.update_id} failed: ${isStoreError(error) ? `${error.code}: ${error.message}` : String(error)}`);
  }
  const chat = ctx.chat?.id ?? ctx.from?.id;
  if (chat === undefined) return;
  await ctx.api.sendMessage(chat, friendly(error)).catch((e: unknown) => console.error(`could not send the error reply either: ${String(e)}`));
}

function friendly(error: unknown): string {
  if (!isStoreError(error)) return 'Sorry, something went wrong on my side. Please try again.';
  switch (error.code) {
    case 'CONTENT_TOO_LARGE':
      return 'That message is too long for me to keep. Please send something shorter.';
    case 'INVALID_CONTENT':
      return 'I cannot store that text (it contains characters a database cannot hold). Please rephrase it.';
    case 'INVALID_PHONE':
      return 'That is not a phone number I can save: it needs 8 to 15 digits, optionally after a +.';
    case 'STORE_UNAVAILABLE':
    case 'STORE_FULL':
    case 'TIER_TIMEOUT':
    case 'TIER_ERROR':
      return 'My storage is unavailable right now, so I could not do that. Please try again in a minute.';
    case 'STORE_CLOSED':
      return 'I am restarting. Please send that again in a moment.';
    default:
      return `Sorry, I could not do that (${error.code}).`;
  }
}

function looksLikePhone(text: string): boolean {
  return /^\+?[\d\s().-]{8,24}$/.test(text.trim()) && (text.match(/\d/g)?.length ?? 0) >= 8;
}

function welcome(name: string | undefined, consoleMode: boolean): string {
  const lines = [
    `Hi${name ? `, ${name}` : ''}! I am the example bot of tiered-conversation-store. I remember our chat in Redis, PostgreSQL or RAM, whichever is configured (/status shows which).`,
    '',
    'Say anything and I will show you what I remember. Commands:',
    ...COMMANDS.filter((c) => c.command !== 'start').map((c) => `/${c.command} - ${c.description}`),
  ];
  if (consoleMode) {
    lines.push('', 'Console mode: you are a local test user. Type /contact +79991234567 to share a phone number, and type the number of a button to press it.');
  }
  return lines.join('\n');
}

function status(store: TieredStore): string {
  const health = store.health();
  const state = { up: 'up', down: 'DOWN (skipped until it answers again)', absent: 'not configured' } as const;
  const lines = ['Storage tiers:', `redis: ${state[health.redis]}`, `postgres: ${state[health.postgres]}`, `memory: ${state[health.memory]}`];
  if (health.postgres !== 'absent') lines.push(`writes waiting for PostgreSQL: ${health.pending}`);
  if (health.redis === 'absent' && health.postgres === 'absent') {
    lines.push('Everything is in RAM and is lost when I stop. Set REDIS_URL and/or DATABASE_URL to keep it.');
  }
  return lines.join('\n');
}

function speaker(message: Message): string {
  return message.role === 'user' ? 'You' : message.role === 'assistant' ? 'Bot' : message.role;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function clip(text: string, max: number): string {
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
