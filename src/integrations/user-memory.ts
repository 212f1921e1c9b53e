import type { Draft } from '../draft.js';
import type { Context } from '../model/context.js';
import { ConfigurationError, ErrorCode, ValidationError } from '../errors.js';
import type { AddMemoryOptions, ListThreadsOptions, TieredStore } from '../store.js';
import type { BookingData, JsonObject, JsonValue, Message, Role, ThreadPage, UserId } from '../types.js';

// Shared by the grammY and Telegraf plugins; it knows neither framework.

/** The thread of messages outside any topic, and of updates whose `thread` option returns undefined. */
export const MAIN_THREAD = 'main';

/**
 * How many of a thread's newest messages a Telegram edit is looked for in. An edit of a message
 * older than that (in its thread) is not followed: the stored copy keeps the first text.
 */
export const TELEGRAM_EDIT_WINDOW = 200;

/** The key of `Message.meta` under which the plugins keep the Telegram ids of a user's message. */
export const TELEGRAM_META_KEY = 'telegram';

/** What the plugins store in `meta.telegram` of a user message added while handling it. */
export interface TelegramMessageRef {
  /** The Telegram `message_id` (unique within its chat). */
  messageId: number;
  /** The chat it was sent in. */
  chatId: number;
}

/** The Telegram message fields the plugins read; both frameworks' messages have them. */
interface IncomingMessage {
  message_id: number;
  message_thread_id?: number;
  is_topic_message?: boolean;
  chat: { id: number; type?: string; is_forum?: boolean };
  text?: string;
  caption?: string;
}

/** What the bot plugins' `memory()` adds to the context: `type MyContext = Context & MemoryFlavor`. */
export interface MemoryFlavor {
  /** The store, bound to the user of the current update. */
  memory: UserMemory;
}

/**
 * One user's view of a {@link TieredStore}: the store's per-user methods without the user id.
 * Without a user (`userId` undefined) every method rejects with a `ValidationError` coded
 * `INVALID_USER_ID`, as the store does for any unusable id.
 */
export class UserMemory {
  /** The thread `add`, `history`, `clear`, `edit` and `startDraft` use unless told otherwise. */
  readonly thread: string;
  /** The user's message this update carries (`message`, `channel_post`, `business_message`), if any. */
  readonly #incoming: TelegramMessageRef | undefined;

  /**
   * @param store The store every call goes to.
   * @param userId The user the calls are about; `undefined` when the update has none.
   * @param context The update's thread (default 'main') and the Telegram message it carries, if any.
   */
  constructor(
    readonly store: TieredStore,
    readonly userId: UserId | undefined,
    context: { thread?: string; incoming?: TelegramMessageRef } = {},
  ) {
    this.thread = context.thread ?? MAIN_THREAD;
    this.#incoming = context.incoming;
  }

  /**
   * Appends a message to this user's history ({@link TieredStore.addMemory}), in this update's
   * thread unless `options.thread` names another. A `'user'` message added while handling an
   * update that carries a message gets that message's ids in `meta.telegram`
   * ({@link TelegramMessageRef}, merged into the meta given; fields given win), so a later
   * `edited_message` finds it.
   */
  async add(role: Role, content: string, options: AddMemoryOptions = {}): Promise<Message> {
    const meta = role === 'user' && this.#incoming ? withTelegram(options.meta, this.#incoming) : options.meta;
    const resolved: AddMemoryOptions = { ...options, thread: options.thread ?? this.thread };
    if (meta !== undefined) resolved.meta = meta;
    return this.store.addMemory(this.#id(), role, content, resolved);
  }

  /**
   * The newest `limit` messages (default: the store's `historyLimit`) of this update's thread (or
   * `thread`), oldest first; with `maxTokens`, the newest that fit that many tokens (see `getHistory`).
   */
  async history(options: { limit?: number; thread?: string; maxTokens?: number } = {}): Promise<Message[]> {
    return this.store.getHistory(this.#id(), { ...options, thread: options.thread ?? this.thread });
  }

  /**
   * What fits the model for this update's thread (or `thread`): its rolling summary and the newest
   * messages after it within `maxTokens` ({@link TieredStore.getContext}).
   */
  async context(options: { maxTokens: number; thread?: string }): Promise<Context> {
    return this.store.getContext(this.#id(), { maxTokens: options?.maxTokens, thread: options?.thread ?? this.thread });
  }

  /** The rolling summary of this update's thread (or `thread`) now ({@link TieredStore.summarizeNow}). */
  async summarizeNow(options: { thread?: string } = {}): Promise<string | null> {
    return this.store.summarizeNow(this.#id(), { thread: options.thread ?? this.thread });
  }

  /** Empties this update's thread (or `thread`) of this user's history; phone, booking, subscription and other threads stay. */
  async clear(options: { thread?: string } = {}): Promise<void> {
    return this.store.clearHistory(this.#id(), { thread: options.thread ?? this.thread });
  }

  /**
   * The stored copy of a Telegram message: the newest message of the thread (this update's
   * unless `options.thread`) whose `meta.telegram.messageId` is `telegramMessageId` and whose
   * `meta.telegram.chatId` is this update's chat (when both are known). Only the newest
   * {@link TELEGRAM_EDIT_WINDOW} messages of the thread are searched; null when not found.
   */
  async findTelegramMessage(telegramMessageId: number, options: { thread?: string; chatId?: number } = {}): Promise<Message | null> {
    const chatId = options.chatId ?? this.#incoming?.chatId;
    const history = await this.store.getHistory(this.#id(), { limit: TELEGRAM_EDIT_WINDOW, thread: options.thread ?? this.thread });
    for (let i = history.length - 1; i >= 0; i--) {
      const message = history[i] as Message;
      const ref = telegramRef(message);
      if (ref?.messageId === telegramMessageId && (chatId === undefined || ref.chatId === undefined || ref.chatId === chatId)) return message;
    }
    return null;
  }

  /**
   * Replaces the content of the stored copy of a Telegram message (found as
   * {@link findTelegramMessage} finds it) and resolves the updated message, or null when there is
   * no such copy within the newest {@link TELEGRAM_EDIT_WINDOW} messages of the thread (nothing
   * is written then). The plugins call it for every `edited_message`; call it yourself for other
   * cases. To edit by the store's message id, use `ctx.memory.store.updateMessage(userId, id, patch)`.
   */
  async edit(telegramMessageId: number, content: string, options: { thread?: string; chatId?: number } = {}): Promise<Message | null> {
    const found = await this.findTelegramMessage(telegramMessageId, options);
    if (!found) return null;
    return this.store.updateMessage(this.#id(), found.id, { content });
  }

  /** Starts a streamed answer in this update's thread (or `options.thread`) ({@link TieredStore.startDraft}). */
  async startDraft(role: Role, options: { thread?: string; meta?: JsonObject } = {}): Promise<Draft> {
    return this.store.startDraft(this.#id(), role, { ...options, thread: options.thread ?? this.thread });
  }

  /** This user's threads, most recently active first ({@link TieredStore.listThreads}). */
  async threads(options?: ListThreadsOptions): Promise<ThreadPage> {
    return this.store.listThreads(this.#id(), options);
  }

  /** The saved phone number as `+digits`, or `null`. */
  async phone(): Promise<string | null> {
    return this.store.getUserPhone(this.#id());
  }

  /** Saves the phone normalised to `+digits` and returns it (`INVALID_PHONE` otherwise); `null` removes it. */
  async setPhone(phone: string | null): Promise<string | null> {
    return this.store.setUserPhone(this.#id(), phone);
  }

  /** The saved booking data, or `null`. */
  async booking(): Promise<BookingData | null> {
    return this.store.getBookingData(this.#id());
  }

  /** Replaces the booking data with a JSON object; `null` removes it. */
  async setBooking(data: BookingData | null): Promise<void> {
    return this.store.setBookingData(this.#id(), data);
  }

  /** Adds this user to the subscribers ({@link TieredStore.addEmailSubscriber}). */
  async subscribe(): Promise<void> {
    return this.store.addEmailSubscriber(this.#id());
  }

  /** Removes this user from the subscribers. */
  async unsubscribe(): Promise<void> {
    return this.store.removeEmailSubscriber(this.#id());
  }

  /** Whether this user is a subscriber. */
  async isSubscribed(): Promise<boolean> {
    return this.store.isEmailSubscriber(this.#id());
  }

  /** Erases this user from every tier: history, phone, booking, subscription ({@link TieredStore.deleteUser}). */
  async forget(): Promise<void> {
    return this.store.deleteUser(this.#id());
  }

  #id(): UserId {
    if (this.userId !== undefined) return this.userId;
    throw new ValidationError(
      ErrorCode.INVALID_USER_ID,
      'ctx.memory: this update has neither ctx.from nor ctx.chat, so there is no user to remember (choose one with the userId option of memory())',
    );
  }
}

/** The context fields the plugins read: the sender, else the chat, and the update. */
export interface UpdateParties {
  from?: { id: number } | undefined;
  chat?: { id: number } | undefined;
}

/** The plugins' options that both frameworks share. */
export interface SharedMemoryOptions<C> {
  userId?: ((ctx: C) => UserId | undefined) | undefined;
  thread?: ((ctx: C) => string | undefined) | undefined;
  followEdits?: boolean | undefined;
}

/**
 * The middleware both plugins return: sets `ctx.memory` for the user `userId` picks (by default
 * the sender, else the chat, as for channel posts) and the thread `thread` picks (by default the
 * message's topic, else 'main'); then, for an `edited_message` (or `edited_channel_post`), updates
 * the stored copy of the message before the bot's handlers run (unless `followEdits` is false).
 */
export function memoryMiddleware<C extends UpdateParties>(
  store: TieredStore,
  options: SharedMemoryOptions<C> = {},
): (ctx: C & Partial<MemoryFlavor>, next: () => Promise<void>) => Promise<void> {
  if (typeof (store as Partial<TieredStore> | undefined)?.addMemory !== 'function') {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, 'memory(store): pass a TieredStore, e.g. memory(TieredStore.fromEnv())');
  }
  const userId = options.userId ?? ((ctx: C) => ctx.from?.id ?? ctx.chat?.id);
  const followEdits = options.followEdits !== false;
  return async (ctx, next) => {
    const update = (ctx as { update?: Record<string, unknown> }).update ?? {};
    const incoming = messageOf(update.message) ?? messageOf(update.channel_post) ?? messageOf(update.business_message);
    const edited = messageOf(update.edited_message) ?? messageOf(update.edited_channel_post) ?? messageOf(update.edited_business_message);
    const carried = incoming ?? edited ?? messageOf((update.callback_query as { message?: unknown } | undefined)?.message);
    const thread = options.thread ? (options.thread(ctx) ?? MAIN_THREAD) : carried ? topicOf(carried) : MAIN_THREAD;
    const ref = incoming ?? edited;
    const memory = new UserMemory(store, userId(ctx), ref ? { thread, incoming: { messageId: ref.message_id, chatId: ref.chat.id } } : { thread });
    ctx.memory = memory;
    const text = edited?.text ?? edited?.caption;
    if (followEdits && edited && text !== undefined && memory.userId !== undefined) await memory.edit(edited.message_id, text);
    return next();
  };
}

/**
 * The thread of a message: `String(message_thread_id)` for a message in a forum topic or a
 * private-chat topic, else 'main'. The `message_thread_id` of a reply in a supergroup without
 * topics names a reply chain, not a topic: those stay in 'main'.
 */
export function topicOf(message: IncomingMessage): string {
  const id = message.message_thread_id;
  if (id === undefined) return MAIN_THREAD;
  const topic = message.is_topic_message === true || message.chat.is_forum === true || message.chat.type === 'private';
  return topic ? String(id) : MAIN_THREAD;
}

function messageOf(value: unknown): IncomingMessage | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const m = value as Partial<IncomingMessage>;
  return typeof m.message_id === 'number' && typeof m.chat?.id === 'number' ? (m as IncomingMessage) : undefined;
}

/** `meta` with the Telegram ids under `meta.telegram`, the caller's own `telegram` fields winning. */
function withTelegram(meta: JsonObject | undefined, ref: TelegramMessageRef): JsonObject {
  const given = meta?.[TELEGRAM_META_KEY];
  const own = given !== null && typeof given === 'object' && !Array.isArray(given) ? given : {};
  return { ...meta, [TELEGRAM_META_KEY]: { messageId: ref.messageId, chatId: ref.chatId, ...own } };
}

/** The Telegram ids a stored message was tagged with, if any. */
function telegramRef(message: Message): { messageId: JsonValue | undefined; chatId: JsonValue | undefined } | undefined {
  const t = message.meta?.[TELEGRAM_META_KEY];
  if (t === null || typeof t !== 'object' || Array.isArray(t)) return undefined;
  return { messageId: t.messageId, chatId: t.chatId };
}
