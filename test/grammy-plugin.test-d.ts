import { Bot, type Context, type MiddlewareFn } from 'grammy';
import { describe, expectTypeOf, it } from 'vitest';
import { memory, type MemoryFlavor, type UserMemory } from '../src/integrations/grammy.js';
import type { Draft } from '../src/draft.js';
import type { BookingData, Message, TieredStore, UserId } from '../src/index.js';
import type { ThreadPage } from '../src/types.js';

type MyContext = Context & MemoryFlavor;
declare const store: TieredStore;

describe('grammY plugin types', () => {
  it('types ctx.memory through the flavor', () => {
    const bot = new Bot<MyContext>('token');
    bot.use(memory(store));
    bot.on('message:text', async (ctx) => {
      expectTypeOf(ctx.memory).toEqualTypeOf<UserMemory>();
      expectTypeOf(ctx.memory.userId).toEqualTypeOf<UserId | undefined>();
      expectTypeOf(ctx.memory.add('user', ctx.message.text)).resolves.toEqualTypeOf<Message>();
      expectTypeOf(ctx.memory.history({ limit: 10 })).resolves.toEqualTypeOf<Message[]>();
      expectTypeOf(ctx.memory.phone()).resolves.toEqualTypeOf<string | null>();
      expectTypeOf(ctx.memory.setPhone).parameter(0).toEqualTypeOf<string | null>();
      expectTypeOf(ctx.memory.booking()).resolves.toEqualTypeOf<BookingData | null>();
      expectTypeOf(ctx.memory.isSubscribed()).resolves.toEqualTypeOf<boolean>();
      expectTypeOf(ctx.memory.forget()).resolves.toEqualTypeOf<void>();
    });
    expectTypeOf(memory<Context>(store)).toEqualTypeOf<MiddlewareFn<Context & MemoryFlavor>>();
  });

  it('rejects wrong arguments', async () => {
    const ctx = {} as MyContext;
    // @ts-expect-error 'robot' is not a role
    await ctx.memory.add('robot', 'hi');
    // @ts-expect-error content is a string
    await ctx.memory.add('user', 42);
    // @ts-expect-error meta is a JSON object
    await ctx.memory.add('user', 'hi', { meta: 'not an object' });
    // @ts-expect-error limit is a number
    await ctx.memory.history({ limit: '10' });
    // @ts-expect-error with exactOptionalPropertyTypes, an explicit undefined limit is not a limit
    await ctx.memory.history({ limit: undefined });
    // @ts-expect-error a phone is a string (or null to remove it)
    await ctx.memory.setPhone(79991234567);
    // @ts-expect-error booking data is a JSON object
    await ctx.memory.setBooking('tomorrow');
    // @ts-expect-error functions are not JSON
    await ctx.memory.setBooking({ at: () => 1 });
    // @ts-expect-error the store is required
    memory();
    // @ts-expect-error a user id is a number or a string
    memory<MyContext>(store, { userId: (c) => c.from });
  });

  it('types the v2 options and methods: thread, followEdits, edit, thread-aware history', () => {
    const bot = new Bot<MyContext>('token');
    bot.use(memory(store, { thread: (ctx) => (ctx.chat?.type === 'private' ? undefined : String(ctx.chat?.id)), followEdits: true }));
    bot.on('edited_message:text', async (ctx) => {
      expectTypeOf(ctx.memory.thread).toEqualTypeOf<string>();
      expectTypeOf(ctx.memory.edit(ctx.editedMessage.message_id, ctx.editedMessage.text)).resolves.toEqualTypeOf<Message | null>();
      expectTypeOf(ctx.memory.findTelegramMessage(1)).resolves.toEqualTypeOf<Message | null>();
      expectTypeOf(ctx.memory.history({ limit: 5, thread: 'other' })).resolves.toEqualTypeOf<Message[]>();
      expectTypeOf(ctx.memory.threads()).resolves.toEqualTypeOf<ThreadPage>();
      expectTypeOf(ctx.memory.startDraft('assistant')).resolves.toEqualTypeOf<Draft>();
      await ctx.memory.clear({ thread: 'other' });
    });
    // @ts-expect-error a thread id is a string
    memory<MyContext>(store, { thread: (c) => c.message?.message_thread_id });
    // @ts-expect-error followEdits is a boolean
    memory<MyContext>(store, { followEdits: 'yes' });
    const ctx = {} as MyContext;
    // @ts-expect-error edit takes the Telegram message id (a number), not the store's id
    void ctx.memory.edit('01HX', 'text');
    // @ts-expect-error the new text is a string
    void ctx.memory.edit(1, { content: 'x' });
  });

  it('needs the flavor: a plain Context has no memory, and the middleware does not fit its bot', () => {
    const bot = new Bot<Context>('token');
    // @ts-expect-error Context lacks MemoryFlavor
    bot.use(memory(store));
    bot.on('message', (ctx) => {
      // @ts-expect-error no ctx.memory without the flavor
      void ctx.memory;
    });
  });
});
