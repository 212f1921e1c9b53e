import type { BaseListChatMessageHistory } from '@langchain/core/chat_history';
import type { BaseMessage } from '@langchain/core/messages';
import { RunnableLambda, RunnableWithMessageHistory } from '@langchain/core/runnables';
import type { generateText, GenerateTextResult, ModelMessage, ToolSet } from 'ai';
import { Telegraf, type Context, type MiddlewareFn } from 'telegraf';
import { editedMessage, message } from 'telegraf/filters';
import { describe, expectTypeOf, it } from 'vitest';
import { fromModelMessage, loadModelMessages, saveModelMessages, toModelMessages, type StoredModelMessage } from '../src/integrations/ai.js';
import type { Message, Role, TieredStore, UserId } from '../src/index.js';
import { TieredChatMessageHistory } from '../src/integrations/langchain.js';
import { memory, type MemoryFlavor, type UserMemory } from '../src/integrations/telegraf.js';

declare const store: TieredStore;
type MyContext = Context & MemoryFlavor;

describe('Telegraf middleware types', () => {
  it('types ctx.memory through the flavor, in filtered handlers too', () => {
    const bot = new Telegraf<MyContext>('token');
    bot.use(memory(store));
    bot.on(message('text'), async (ctx) => {
      expectTypeOf(ctx.memory).toEqualTypeOf<UserMemory>();
      expectTypeOf(ctx.memory.userId).toEqualTypeOf<UserId | undefined>();
      expectTypeOf(ctx.memory.add('user', ctx.message.text)).resolves.toEqualTypeOf<Message>();
      expectTypeOf(ctx.memory.history({ limit: 10 })).resolves.toEqualTypeOf<Message[]>();
    });
    expectTypeOf(memory<Context>(store)).toEqualTypeOf<MiddlewareFn<Context & MemoryFlavor>>();
  });

  it('the userId option sees the bot’s context and must return a user id', () => {
    memory<MyContext>(store, { userId: (ctx) => ctx.chat?.id });
    // @ts-expect-error a user id is a number or a string, not a User
    memory<MyContext>(store, { userId: (ctx) => ctx.from });
    // @ts-expect-error the store is required
    memory();
  });

  it('takes the v2 options (thread, followEdits) and types edit, thread and history by thread', () => {
    const bot = new Telegraf<MyContext>('token');
    bot.use(memory(store, { thread: (ctx) => (ctx.chat?.type === 'supergroup' ? 'groups' : undefined), followEdits: false }));
    bot.on(editedMessage('text'), async (ctx) => {
      expectTypeOf(ctx.memory.thread).toEqualTypeOf<string>();
      expectTypeOf(ctx.memory.edit(ctx.editedMessage.message_id, ctx.editedMessage.text)).resolves.toEqualTypeOf<Message | null>();
      expectTypeOf(ctx.memory.history({ thread: 'groups' })).resolves.toEqualTypeOf<Message[]>();
    });
    // @ts-expect-error a thread id is a string, not a number
    memory<MyContext>(store, { thread: (ctx) => ctx.chat?.id });
    // @ts-expect-error followEdits is a boolean
    memory<MyContext>(store, { followEdits: 1 });
  });

  it('needs the flavor: a plain Context has no memory, and the middleware does not fit its bot', () => {
    const bot = new Telegraf<Context>('token');
    // @ts-expect-error Context lacks MemoryFlavor
    bot.use(memory(store));
    bot.on(message('text'), (ctx) => {
      // @ts-expect-error no ctx.memory without the flavor
      void ctx.memory;
    });
  });
});

describe('LangChain history types', () => {
  it('is a BaseListChatMessageHistory that RunnableWithMessageHistory takes', () => {
    const history = new TieredChatMessageHistory({ store, userId: 'u', limit: 20 });
    expectTypeOf(history).toExtend<BaseListChatMessageHistory>();
    expectTypeOf(history.getMessages()).resolves.toEqualTypeOf<BaseMessage[]>();
    expectTypeOf(history.addMessages).parameter(0).toEqualTypeOf<BaseMessage[]>();
    new RunnableWithMessageHistory({
      runnable: RunnableLambda.from((messages: BaseMessage[]) => messages.length),
      getMessageHistory: (sessionId: string) => new TieredChatMessageHistory({ store, userId: sessionId }),
    });
  });

  it('rejects wrong options', () => {
    // @ts-expect-error the user id is required
    new TieredChatMessageHistory({ store });
    // @ts-expect-error limit is a number
    new TieredChatMessageHistory({ store, userId: 1, limit: '10' });
    // @ts-expect-error with exactOptionalPropertyTypes, an explicit undefined limit is not a limit
    new TieredChatMessageHistory({ store, userId: 1, limit: undefined });
    // @ts-expect-error a thread id is a string
    new TieredChatMessageHistory({ store, userId: 1, thread: 42 });
  });

  it('takes a thread and exposes it', () => {
    const history = new TieredChatMessageHistory({ store, userId: 'u', thread: 'conversation-7' });
    expectTypeOf(history.thread).toEqualTypeOf<string>();
  });
});

describe('AI SDK conversion types', () => {
  it('gives generateText messages and takes its response messages', async () => {
    type Messages = NonNullable<Parameters<typeof generateText>[0]['messages']>;
    expectTypeOf(toModelMessages([])).toEqualTypeOf<ModelMessage[]>();
    expectTypeOf(toModelMessages([])).toExtend<Messages>();
    expectTypeOf(loadModelMessages(store, 1)).resolves.toExtend<Messages>();
    expectTypeOf(loadModelMessages(store, 1, { thread: 't-1', limit: 20 })).resolves.toExtend<Messages>();
    const result = {} as GenerateTextResult<ToolSet, never>;
    expectTypeOf(saveModelMessages(store, 1, result.response.messages)).resolves.toEqualTypeOf<Message[]>();
    expectTypeOf(fromModelMessage({ role: 'user', content: 'hi' })).toEqualTypeOf<StoredModelMessage>();
    expectTypeOf<StoredModelMessage['role']>().toEqualTypeOf<Role>();
  });

  it('rejects what is not a ModelMessage', async () => {
    // @ts-expect-error 'robot' is not a role
    fromModelMessage({ role: 'robot', content: 'hi' });
    // @ts-expect-error tool messages hold tool results, not a string
    await saveModelMessages(store, 1, [{ role: 'tool', content: 'result' }]);
    // @ts-expect-error meta is a JSON object
    await saveModelMessages(store, 1, [], { meta: 'x' });
    await saveModelMessages(store, 1, [], { thread: 't-1' });
    // @ts-expect-error a thread id is a string
    await saveModelMessages(store, 1, [], { thread: 1 });
    // @ts-expect-error a thread id is a string
    await loadModelMessages(store, 1, { thread: null });
  });
});
