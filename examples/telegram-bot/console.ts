import { createInterface } from 'node:readline';
import { BotError, type Bot, type Transformer } from 'grammy';
import type { InlineKeyboardButton, KeyboardButton, Message, Update, User, UserFromGetMe } from 'grammy/types';
import { handleError, type BotContext } from './handlers.js';

/** The bot as getMe would describe it; given to grammY so it never asks Telegram. */
export const CONSOLE_BOT: UserFromGetMe = {
  id: 1,
  is_bot: true,
  first_name: 'Example bot',
  username: 'tiered_store_example_bot',
  can_join_groups: false,
  can_read_all_group_messages: false,
  supports_inline_queries: false,
  can_connect_to_business: false,
  has_main_web_app: false,
  has_topics_enabled: false,
  allows_users_to_create_topics: false,
  can_manage_bots: false,
  supports_join_request_queries: false,
};

/** Whoever types in the terminal. */
export const LOCAL_USER: User = { id: 1001, is_bot: false, first_name: 'friend', language_code: 'en' };

const INDENT = '     ';

/**
 * A Telegram chat played in the terminal: typed lines become updates, and an API transformer
 * prints what the bot sends instead of calling Telegram.
 */
export class ConsoleChat {
  #updates = 0;
  #messages = 0;
  /** Inline buttons of the bot's last message: the next line may press one by its number. */
  #buttons: { data: string; message: Message }[] = [];

  constructor(private readonly write: (text: string) => void) {}

  /** Answers every Bot API call locally; nothing goes over the network. */
  readonly transformer: Transformer = async (_prev, method, payload) => {
    const p = payload as Record<string, unknown>;
    let result: unknown = true;
    if (method === 'getMe') result = CONSOLE_BOT;
    if (method === 'sendMessage' || method === 'editMessageText') {
      this.#say(method === 'sendMessage' ? 'bot: ' : 'bot (edited): ', String(p.text));
      const message = this.#message(p);
      this.#keyboard(p.reply_markup, message);
      result = message;
    }
    // The Bot API's streaming preview of a message being written: shown growing, line by line.
    if (method === 'sendMessageDraft' && typeof p.text === 'string' && p.text) this.#say('bot (typing): ', p.text);
    if (method === 'answerCallbackQuery' && typeof p.text === 'string') this.write(`${INDENT}(notification: ${p.text})\n`);
    return { ok: true, result } as Awaited<ReturnType<Transformer>>;
  };

  /** The update a typed line stands for (a text, a shared contact or a button press), or why there is none. */
  toUpdate(line: string): Update | string {
    const buttons = this.#buttons;
    this.#buttons = [];
    const text = line.trim();
    const pressed = /^\d+$/.test(text) ? buttons[Number(text) - 1] : undefined;
    if (pressed) {
      const query = { id: String(++this.#updates), from: LOCAL_USER, chat_instance: 'console', data: pressed.data, message: pressed.message };
      return { update_id: this.#updates, callback_query: query } as Update;
    }
    const contact = /^\/contact(?:\s+(.*))?$/.exec(text);
    if (contact) {
      if (!contact[1]) return 'console: type /contact followed by a phone number, e.g. /contact +79991234567';
      return this.#incoming({ contact: { phone_number: contact[1], first_name: LOCAL_USER.first_name, user_id: LOCAL_USER.id } });
    }
    const command = /^\/\w+(@\w+)?/.exec(text);
    return this.#incoming(command ? { text, entities: [{ type: 'bot_command', offset: 0, length: command[0].length }] } : { text });
  }

  #incoming(content: Record<string, unknown>): Update {
    const message = {
      message_id: ++this.#messages,
      date: now(),
      chat: { id: LOCAL_USER.id, type: 'private', first_name: LOCAL_USER.first_name },
      from: LOCAL_USER,
      ...content,
    };
    return { update_id: ++this.#updates, message } as Update;
  }

  #message(p: Record<string, unknown>): Message {
    const chat = { id: Number(p.chat_id ?? LOCAL_USER.id), type: 'private', first_name: LOCAL_USER.first_name };
    const id = typeof p.message_id === 'number' ? p.message_id : ++this.#messages;
    return { message_id: id, date: now(), chat, from: CONSOLE_BOT, text: p.text, reply_markup: p.reply_markup } as Message;
  }

  #say(prefix: string, text: string): void {
    this.write(
      `${prefix}${text
        .split('\n')
        .map((l, i) => (i === 0 || !l ? l : INDENT + l))
        .join('\n')}\n`,
    );
  }

  #keyboard(markup: unknown, message: Message): void {
    const m = (markup ?? {}) as { inline_keyboard?: InlineKeyboardButton[][]; keyboard?: KeyboardButton[][] };
    if (m.inline_keyboard) {
      const buttons = m.inline_keyboard.flat().filter((b): b is InlineKeyboardButton.CallbackButton => 'callback_data' in b);
      this.#buttons = buttons.map((b) => ({ data: b.callback_data, message }));
      const list = buttons.map((b, i) => `[${i + 1}] ${b.text}`).join('   ');
      this.write(`${INDENT}${list}   (type ${buttons.map((_, i) => i + 1).join(' or ')} to press a button)\n`);
    }
    if (m.keyboard)
      this.write(
        `${INDENT}${m.keyboard
          .flat()
          .map((b) => `[ ${typeof b === 'string' ? b : b.text} ]`)
          .join(' ')}\n`,
      );
  }
}

/**
 * Chats in the terminal until stdin ends, Ctrl+C, or `signal` aborts: each line goes through
 * `bot.handleUpdate`, so the bot runs exactly the handlers it runs on Telegram.
 */
export async function runConsole(bot: Bot<BotContext>, chat: ConsoleChat, signal: AbortSignal): Promise<void> {
  const tty = process.stdin.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty, prompt: 'you: ' });
  rl.on('SIGINT', () => rl.close());
  signal.addEventListener('abort', () => rl.close(), { once: true });
  if (tty) rl.prompt();
  for await (const line of rl) {
    // Piped input is not shown by the terminal: echo it so the transcript reads like a chat.
    if (!tty && line.trim()) process.stdout.write(`you: ${line.length > 200 ? `${line.slice(0, 199)}…` : line}\n`);
    const update = line.trim() ? chat.toUpdate(line) : undefined;
    if (typeof update === 'string') process.stdout.write(`${update}\n`);
    else if (update) await handle(bot, update);
    if (tty) rl.prompt();
  }
  if (tty) process.stdout.write('\n');
}

async function handle(bot: Bot<BotContext>, update: Update): Promise<void> {
  try {
    await bot.handleUpdate(update);
  } catch (error) {
    // Long polling sends middleware errors to bot.catch; handleUpdate throws them: same handler here.
    if (!(error instanceof BotError)) throw error;
    await handleError(error as BotError<BotContext>);
  }
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}
