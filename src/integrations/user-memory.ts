import { ConfigurationError, ErrorCode, ValidationError } from '../errors.js';
import type { AddMemoryOptions, TieredStore } from '../store.js';
import type { BookingData, Message, Role, UserId } from '../types.js';

// Shared by the grammY and Telegraf plugins; it knows neither framework.

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
  /**
   * @param store The store every call goes to.
   * @param userId The user the calls are about; `undefined` when the update has none.
   */
  constructor(
    readonly store: TieredStore,
    readonly userId: UserId | undefined,
  ) {}

  /** Appends a message to this user's history ({@link TieredStore.addMemory}). */
  async add(role: Role, content: string, options?: AddMemoryOptions): Promise<Message> {
    return this.store.addMemory(this.#id(), role, content, options);
  }

  /** The newest `limit` messages (default: the store's `historyLimit`), oldest first. */
  async history(options?: { limit?: number }): Promise<Message[]> {
    return this.store.getHistory(this.#id(), options);
  }

  /** Empties this user's history; phone, booking and subscription stay. */
  async clear(): Promise<void> {
    return this.store.clearHistory(this.#id());
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

/** The context fields the plugins read: the sender, else the chat. */
export interface UpdateParties {
  from?: { id: number } | undefined;
  chat?: { id: number } | undefined;
}

/**
 * The middleware both plugins return: sets `ctx.memory` for the user `userId` picks (by default
 * the sender, else the chat, as for channel posts).
 */
export function memoryMiddleware<C extends UpdateParties>(
  store: TieredStore,
  userId: (ctx: C) => UserId | undefined = (ctx) => ctx.from?.id ?? ctx.chat?.id,
): (ctx: C & Partial<MemoryFlavor>, next: () => Promise<void>) => Promise<void> {
  if (typeof (store as Partial<TieredStore> | undefined)?.addMemory !== 'function') {
    throw new ConfigurationError(ErrorCode.INVALID_OPTION, 'memory(store): pass a TieredStore, e.g. memory(TieredStore.fromEnv())');
  }
  return (ctx, next) => {
    ctx.memory = new UserMemory(store, userId(ctx));
    return next();
  };
}
