import type { Context, MiddlewareFn } from 'telegraf';
import type { TieredStore } from '../store.js';
import type { UserId } from '../types.js';
import { memoryMiddleware, UserMemory, type MemoryFlavor } from './user-memory.js';

// Types only from telegraf: this module never loads telegraf, the bot that imports it does.

export { UserMemory, type MemoryFlavor };

/** Options of {@link memory}. */
export interface MemoryOptions<C extends Context = Context> {
  /**
   * Whose memory `ctx.memory` is for an update; `undefined` when there is no one to remember.
   * Return `ctx.chat?.id` to share one memory per chat in groups.
   * @default (ctx) => ctx.from?.id ?? ctx.chat?.id
   */
  userId?: (ctx: C) => UserId | undefined;
}

/**
 * Telegraf middleware that sets `ctx.memory`, bound to the user of each update.
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
  return memoryMiddleware<C>(store, options.userId);
}
