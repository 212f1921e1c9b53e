import { readdirSync, readFileSync } from 'node:fs';
import { AIMessage, ChatMessage, FunctionMessage, HumanMessage, SystemMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import type { ChatPromptValue } from '@langchain/core/prompt_values';
import { ChatPromptTemplate, MessagesPlaceholder } from '@langchain/core/prompts';
import { RunnableLambda, RunnableWithMessageHistory } from '@langchain/core/runnables';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { TieredChatMessageHistory } from '../src/integrations/langchain.js';
import { PostgresAdapter, TieredStore, type Message } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

const contents = (messages: Message[]) => messages.map((m) => `${m.role}:${m.content}`);
const lc = (messages: BaseMessage[]) => messages.map((m) => `${m.type}:${m.text}`);
const memoryStore = (options: ConstructorParameters<typeof TieredStore>[0] = {}) => new TieredStore({ logger: false, ...options });

/** A chain whose model answers from a fixed list and records every prompt it was given. */
function chatChain(store: TieredStore, responses: string[]) {
  const prompts: BaseMessage[][] = [];
  const prompt = ChatPromptTemplate.fromMessages([['system', 'You are terse.'], new MessagesPlaceholder('history'), ['human', '{question}']]);
  const record = RunnableLambda.from((value: ChatPromptValue) => {
    prompts.push(value.toChatMessages());
    return value;
  });
  const chain = new RunnableWithMessageHistory({
    runnable: prompt.pipe(record).pipe(new FakeListChatModel({ responses })),
    getMessageHistory: (sessionId: string) => new TieredChatMessageHistory({ store, userId: sessionId }),
    inputMessagesKey: 'question',
    historyMessagesKey: 'history',
  });
  return { chain, prompts };
}

const toolExchange = () => [
  new SystemMessage('You can look up the weather.'),
  new HumanMessage({ content: 'Weather in Paris?', id: 'h1' }),
  new AIMessage({
    content: '',
    id: 'run-1',
    tool_calls: [{ id: 'call_1', name: 'weather', args: { city: 'Paris' }, type: 'tool_call' }],
    response_metadata: { model_name: 'fake' },
  }),
  new ToolMessage({ content: '18°C, sunny', tool_call_id: 'call_1', name: 'weather', artifact: { celsius: 18 }, status: 'success' }),
  new AIMessage('It is 18°C and sunny in Paris.'),
];

describe('LangChain: TieredChatMessageHistory', () => {
  it('round-trips every message type with tool calls, tool_call_id, ids and metadata; content stays readable text', async () => {
    const store = memoryStore();
    const history = new TieredChatMessageHistory({ store, userId: 'lc1' });
    const sent = toolExchange();
    await history.addMessages(sent);

    expect(contents(await store.getHistory('lc1'))).toEqual([
      'system:You can look up the weather.',
      'user:Weather in Paris?',
      'assistant:',
      'tool:18°C, sunny',
      'assistant:It is 18°C and sunny in Paris.',
    ]);
    const back = await history.getMessages();
    expect(back.map((m) => m.constructor.name)).toEqual(['SystemMessage', 'HumanMessage', 'AIMessage', 'ToolMessage', 'AIMessage']);
    expect(back.map((m) => m.toDict())).toEqual(sent.map((m) => m.toDict()));
    const call = back[2] as AIMessage;
    expect(call.tool_calls).toEqual([{ id: 'call_1', name: 'weather', args: { city: 'Paris' }, type: 'tool_call' }]);
    expect(call.response_metadata).toEqual({ model_name: 'fake' });
    const result = back[3] as ToolMessage;
    expect([result.tool_call_id, result.name, result.status, result.artifact]).toEqual(['call_1', 'weather', 'success', { celsius: 18 }]);
    expect(back[1]?.id).toBe('h1');
    await store.close();
  });

  it('keeps plain messages plain: no meta for a bare string, and others’ addMemory writes read back as messages', async () => {
    const store = memoryStore();
    const history = new TieredChatMessageHistory({ store, userId: 'lc2' });
    await history.addUserMessage('hi');
    await history.addAIMessage('hello');
    await store.addMemory('lc2', 'system', 'from elsewhere');
    const stored = await store.getHistory('lc2');
    expect(stored.map((m) => m.meta)).toEqual([undefined, undefined, undefined]);
    expect((await history.getMessages()).map((m) => m.constructor.name)).toEqual(['HumanMessage', 'AIMessage', 'SystemMessage']);
    expect(lc(await history.getMessages())).toEqual(['human:hi', 'ai:hello', 'system:from elsewhere']);
    await store.close();
  });

  it('multimodal content round-trips through meta, with its text as the stored content', async () => {
    const store = memoryStore();
    const history = new TieredChatMessageHistory({ store, userId: 'lc3' });
    const content = [
      { type: 'text', text: 'What is in ' },
      { type: 'text', text: 'this picture?' },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
    ];
    await history.addMessage(new HumanMessage({ content }));
    expect(contents(await store.getHistory('lc3'))).toEqual(['user:What is in this picture?']);
    const [back] = await history.getMessages();
    expect(back).toBeInstanceOf(HumanMessage);
    expect(back?.content).toEqual(content);
    await store.close();
  });

  it('refuses what the store cannot hold with INVALID_META: JSON is checked for the whole batch first, size by the store', async () => {
    const store = memoryStore({ limits: { metaBytes: 1024 } });
    const history = new TieredChatMessageHistory({ store, userId: 'lc4' });
    const inline = new HumanMessage({ content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(2000)}` } }] });
    await expect(history.addMessage(inline)).rejects.toMatchObject({ code: 'INVALID_META' });
    const notJson = new ToolMessage({ content: 'x', tool_call_id: 'c', artifact: { at: new Map() } });
    await expect(history.addMessages([new HumanMessage('before'), notJson])).rejects.toMatchObject({ code: 'INVALID_META' });
    expect(await store.getHistory('lc4')).toEqual([]);
    await store.close();
  });

  it('refuses message types the store has no role for, before writing any message of the batch', async () => {
    const store = memoryStore();
    const history = new TieredChatMessageHistory({ store, userId: 'lc5' });
    await expect(history.addMessages([new HumanMessage('first'), new ChatMessage('hi', 'narrator')])).rejects.toMatchObject({ code: 'INVALID_ROLE' });
    await expect(history.addMessage(new FunctionMessage({ content: '{}', name: 'f' }))).rejects.toMatchObject({ code: 'INVALID_ROLE' });
    expect(await store.getHistory('lc5')).toEqual([]);
    await store.close();
  });

  it('limit returns the newest messages and drops tool results whose call fell outside the window', async () => {
    const store = memoryStore();
    await new TieredChatMessageHistory({ store, userId: 'lc6' }).addMessages(toolExchange());
    expect(lc(await new TieredChatMessageHistory({ store, userId: 'lc6', limit: 3 }).getMessages())).toEqual([
      'ai:',
      'tool:18°C, sunny',
      'ai:It is 18°C and sunny in Paris.',
    ]);
    expect(lc(await new TieredChatMessageHistory({ store, userId: 'lc6', limit: 2 }).getMessages())).toEqual(['ai:It is 18°C and sunny in Paris.']);
    expect(await new TieredChatMessageHistory({ store, userId: 'lc6', limit: 0 }).getMessages()).toEqual([]);
    await store.close();
  });

  it('a tool message written without a tool_call_id cannot become a ToolMessage: getMessages says so with INVALID_META', async () => {
    const store = memoryStore();
    await store.addMemory('lc7', 'user', 'q');
    await store.addMemory('lc7', 'tool', 'plain result');
    await expect(new TieredChatMessageHistory({ store, userId: 'lc7' }).getMessages()).rejects.toMatchObject({
      code: 'INVALID_META',
      message: expect.stringMatching(/tool_call_id/),
    });
    await store.close();
  });

  it('clear() empties only this user’s history', async () => {
    const store = memoryStore();
    await store.addMemory('lc8', 'user', 'keep me');
    await store.setBookingData('lc9', { step: 1 });
    const history = new TieredChatMessageHistory({ store, userId: 'lc9' });
    await history.addUserMessage('bye');
    await history.clear();
    expect(await history.getMessages()).toEqual([]);
    expect(await store.getBookingData('lc9')).toEqual({ step: 1 });
    expect(contents(await store.getHistory('lc8'))).toEqual(['user:keep me']);
    await store.close();
  });

  it('the thread option reads and writes one of the user’s threads; clear() empties only that thread', async () => {
    const store = memoryStore();
    await store.addMemory('lc10', 'user', 'in main');
    const work = new TieredChatMessageHistory({ store, userId: 'lc10', thread: 'work' });
    expect(work.thread).toBe('work');
    expect(new TieredChatMessageHistory({ store, userId: 'lc10' }).thread).toBe('main');
    await work.addMessages(toolExchange());
    expect(lc(await new TieredChatMessageHistory({ store, userId: 'lc10', thread: 'work', limit: 2 }).getMessages())).toEqual([
      'ai:It is 18°C and sunny in Paris.',
    ]);
    expect((await store.getHistory('lc10', { thread: 'work' })).every((m) => m.thread === 'work')).toBe(true);
    expect(contents(await store.getHistory('lc10'))).toEqual(['user:in main']);
    await work.clear();
    expect(await work.getMessages()).toEqual([]);
    expect(lc(await new TieredChatMessageHistory({ store, userId: 'lc10' }).getMessages())).toEqual(['human:in main']);
    expect(() => new TieredChatMessageHistory({ store, userId: 'lc10', thread: 'no spaces' })).toThrow(expect.objectContaining({ code: 'INVALID_THREAD' }));
    await store.close();
  });

  it('the constructor refuses a missing store, a bad user id and a bad limit', async () => {
    const store = memoryStore();
    expect(() => new TieredChatMessageHistory({ store: undefined as unknown as TieredStore, userId: 1 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    );
    expect(() => new TieredChatMessageHistory({ store, userId: 'has space' })).toThrow(expect.objectContaining({ code: 'INVALID_USER_ID' }));
    expect(() => new TieredChatMessageHistory({ store, userId: 1, limit: -1 })).toThrow(expect.objectContaining({ code: 'INVALID_OPTION' }));
    await store.close();
  });

  it('RunnableWithMessageHistory: the second turn’s prompt carries the first turn, and both turns are stored', async () => {
    const store = memoryStore();
    const { chain, prompts } = chatChain(store, ['Hi Ann!', 'You are Ann.']);
    const first = await chain.invoke({ question: 'I am Ann.' }, { configurable: { sessionId: 'lc10' } });
    const second = await chain.invoke({ question: 'Who am I?' }, { configurable: { sessionId: 'lc10' } });
    expect([first.text, second.text]).toEqual(['Hi Ann!', 'You are Ann.']);
    expect(prompts.map(lc)).toEqual([
      ['system:You are terse.', 'human:I am Ann.'],
      ['system:You are terse.', 'human:I am Ann.', 'ai:Hi Ann!', 'human:Who am I?'],
    ]);
    expect(contents(await store.getHistory('lc10'))).toEqual(['user:I am Ann.', 'assistant:Hi Ann!', 'user:Who am I?', 'assistant:You are Ann.']);
    expect(await store.getHistory('lc11')).toEqual([]);
    await store.close();
  });

  it('LangChain only logs a store refusal while RunnableWithMessageHistory saves: the turn resolves without its answer stored', async () => {
    const store = memoryStore({ limits: { contentBytes: 16 } });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const { chain } = chatChain(store, ['an answer longer than sixteen bytes']);
      const answer = await chain.invoke({ question: 'short' }, { configurable: { sessionId: 'lc12' } });
      expect(answer.text).toBe('an answer longer than sixteen bytes');
      expect([...warn.mock.calls, ...error.mock.calls].flat().join('\n')).toMatch(/content is larger than 16 bytes/);
    } finally {
      warn.mockRestore();
      error.mockRestore();
    }
    expect(contents(await store.getHistory('lc12'))).toEqual(['user:short']);
    await store.close();
  });

  it('only src/integrations/langchain.ts imports @langchain/core, so the rest of the library never loads it', () => {
    const dir = new URL('../src/', import.meta.url);
    const importers = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter(
      (file) => file.endsWith('.ts') && /from '@langchain\//.test(readFileSync(new URL(file, dir), 'utf8')),
    );
    expect(importers).toEqual(['integrations/langchain.ts']);
  });
});

describe('LangChain with a real Redis + PostgreSQL store', () => {
  const iso = isolation('langchain adapter');
  afterAll(async () => {
    await cleanupRedis(redisUrl(), iso.keyPrefix);
    await cleanupPostgres(databaseUrl(), iso.schema);
  });

  it('two turns through RunnableWithMessageHistory, then a fresh store (and a PostgreSQL-only one) reads them back, tool calls included', async () => {
    const store = makeStore('write-through', iso);
    const { chain } = chatChain(store, ['Hi Ann!', 'You are Ann.']);
    await chain.invoke({ question: 'I am Ann.' }, { configurable: { sessionId: 'ann' } });
    await chain.invoke({ question: 'Who am I?' }, { configurable: { sessionId: 'ann' } });
    const exchange = toolExchange().slice(1);
    await new TieredChatMessageHistory({ store, userId: 'ann' }).addMessages(exchange);
    await store.close();

    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    expect(contents(await durable.getHistory('ann')).slice(0, 4)).toEqual(['user:I am Ann.', 'assistant:Hi Ann!', 'user:Who am I?', 'assistant:You are Ann.']);
    await durable.close();

    const again = makeStore('write-through', iso);
    const back = await new TieredChatMessageHistory({ store: again, userId: 'ann' }).getMessages();
    expect(lc(back.slice(0, 4))).toEqual(['human:I am Ann.', 'ai:Hi Ann!', 'human:Who am I?', 'ai:You are Ann.']);
    expect(back.slice(4).map((m) => m.toDict())).toEqual(exchange.map((m) => m.toDict()));
    const { chain: resumed, prompts } = chatChain(again, ['Still Ann.']);
    await resumed.invoke({ question: 'And now?' }, { configurable: { sessionId: 'ann' } });
    expect(lc(prompts[0] ?? []).slice(0, 5)).toEqual(['system:You are terse.', 'human:I am Ann.', 'ai:Hi Ann!', 'human:Who am I?', 'ai:You are Ann.']);
    await again.close();
  });
});
