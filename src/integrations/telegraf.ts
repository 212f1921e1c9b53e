import type { Context, MiddlewareFn } from 'telegraf';
import type { TieredStore } from '../store.js';
import type { UserId } from '../types.js';
import {
  MAIN_THREAD,
  memoryMiddleware,
  TELEGRAM_EDIT_WINDOW,
  TELEGRAM_META_KEY,
  type TelegramMessageRef,
  UserMemory,
  type MemoryFlavor,
} from './user-memory.js';

// Types only from telegraf: this module never loads telegraf, the bot that imports it does.

export { MAIN_THREAD, TELEGRAM_EDIT_WINDOW, TELEGRAM_META_KEY, UserMemory, type MemoryFlavor, type TelegramMessageRef };

/** Options of {@link memory}. */
export interface MemoryOptions<C extends Context = Context> {
  /**
   * Whose memory `ctx.memory` is for an update; `undefined` when there is no one to remember.
   * Return `ctx.chat?.id` to share one memory per chat in groups.
   * @default (ctx) => ctx.from?.id ?? ctx.chat?.id
   */
  userId?: (ctx: C) => UserId | undefined;
  /**
   * Which thread of the user's memory an update belongs to: `ctx.memory`'s `add`, `history`,
   * `clear`, `edit` and `startDraft` use it. `undefined` means 'main'. Thread ids are 1-128
   * characters of [A-Za-z0-9_-].
   * @default a message in a forum topic or a private-chat topic: `String(message_thread_id)`; anything else: 'main'
   */
  thread?: (ctx: C) => string | undefined;
  /**
   * Whether an `edited_message` (or `edited_channel_post`) updates the stored copy of the message
   * (the one a handler added with `ctx.memory.add('user', ...)`, which the plugin tags with
   * `meta.telegram.messageId`), before the bot's handlers run. Only the newest
   * {@link TELEGRAM_EDIT_WINDOW} (200) messages of the thread are searched: edits of older messages
   * are not followed, and edits of messages never stored change nothing.
   * @default true
   */
  followEdits?: boolean;
}

/**
 * Telegraf middleware that sets `ctx.memory`, bound to the user and thread of each update.
 *
 * ```ts
 * type MyContext = Context & MemoryFlavor;
 * const bot = new Telegraf<MyContext>(token);
 * bot.use(memory(TieredStore.fromEnv()));
 * bot.on(message('text'), (ctx) => ctx.memory.add('user', ctx.message.text));
 * ```
 * @param store The store to keep conversations in; the bot owns it and `close()`s it on shutdown.
 * @throws ConfigurationError `INVALID_OPTION` when `store` is not a store
 */
export function memory<C extends Context>(store: TieredStore, options: MemoryOptions<C> = {}): MiddlewareFn<C & MemoryFlavor> {
  return memoryMiddleware<C>(store, options);
}
