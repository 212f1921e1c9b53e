import { readFileSync } from 'node:fs';
import { generateText, jsonSchema, modelMessageSchema, stepCountIs, tool, type ModelMessage } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { AI_SDK_META_KEY, fromModelMessage, loadModelMessages, saveModelMessages, toModelMessages } from '../src/integrations/ai.js';
import { PostgresAdapter, TieredStore, type Message } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

const contents = (messages: Message[]) => messages.map((m) => `${m.role}:${m.content}`);
const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: 1, text: 1, reasoning: undefined } };
const text = (value: string) => ({
  content: [{ type: 'text' as const, text: value }],
  finishReason: { unified: 'stop' as const, raw: undefined },
  usage,
  warnings: [],
});
const toolCall = (id: string, city: string) => ({
  content: [{ type: 'tool-call' as const, toolCallId: id, toolName: 'weather', input: JSON.stringify({ city }) }],
  finishReason: { unified: 'tool-calls' as const, raw: undefined },
  usage,
  warnings: [],
});
const weather = tool({
  description: 'The weather in a city',
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => ({ city, celsius: 18 }),
});
/** A model that never leaves the process, and treats example.com URLs as its own (so nothing is downloaded). */
const mockModel = (...results: ReturnType<typeof text>[] | ReturnType<typeof toolCall>[]) =>
  new MockLanguageModelV3({ doGenerate: results, supportedUrls: { 'image/*': [/^https:\/\/example\.com\//] } });

/** One chat turn as an app writes it: the history, the user's message, generateText, then save what was new. */
async function turn(store: TieredStore, userId: string, question: string, model: MockLanguageModelV3) {
  const user: ModelMessage = { role: 'user', content: question };
  const messages = [...(await loadModelMessages(store, userId)), user];
  const result = await generateText({ model, messages, tools: { weather }, stopWhen: stepCountIs(2) });
  await saveModelMessages(store, userId, [user, ...result.response.messages]);
  return result;
}

describe('AI SDK: ModelMessage conversion', () => {
  it('a tool-using turn is stored as readable text with the parts in meta, and converts back to the same messages', async () => {
    const store = new TieredStore({ logger: false });
    const model = new MockLanguageModelV3({ doGenerate: [toolCall('call-1', 'Paris'), text('It is 18°C in Paris.')] });
    const result = await turn(store, 'ai1', 'Weather in Paris?', model);
    expect(result.text).toBe('It is 18°C in Paris.');

    const stored = await store.getHistory('ai1');
    expect(contents(stored)).toEqual([
      'user:Weather in Paris?',
      'assistant:[tool call weather {"city":"Paris"}]',
      'tool:[tool result weather] {"city":"Paris","celsius":18}',
      'assistant:It is 18°C in Paris.',
    ]);
    expect(stored[0]?.meta).toBeUndefined();
    expect(stored[1]?.meta).toEqual({
      [AI_SDK_META_KEY]: { content: [{ type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: { city: 'Paris' } }] },
    });
    expect(toModelMessages(stored)).toEqual([{ role: 'user', content: 'Weather in Paris?' }, ...result.response.messages]);
    for (const message of toModelMessages(stored)) expect(modelMessageSchema.safeParse(message).success).toBe(true);
    await store.close();
  });

  it('generateText accepts the history on the next turn: the model sees the earlier tool call and its result', async () => {
    const store = new TieredStore({ logger: false });
    await turn(store, 'ai2', 'Weather in Paris?', new MockLanguageModelV3({ doGenerate: [toolCall('call-1', 'Paris'), text('18°C.')] }));
    const next = new MockLanguageModelV3({ doGenerate: [text('Still 18°C.')] });
    await turn(store, 'ai2', 'And now?', next);
    const prompt = next.doGenerateCalls[0]?.prompt ?? [];
    expect(prompt.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user']);
    expect(prompt[1]?.content).toEqual([expect.objectContaining({ type: 'tool-call', toolCallId: 'call-1', input: { city: 'Paris' } })]);
    expect(prompt[2]?.content).toEqual([
      expect.objectContaining({ type: 'tool-result', toolCallId: 'call-1', output: { type: 'json', value: { city: 'Paris', celsius: 18 } } }),
    ]);
    expect(contents(await store.getHistory('ai2')).slice(-2)).toEqual(['user:And now?', 'assistant:Still 18°C.']);
    await store.close();
  });

  it('images and files round-trip: bytes as base64, URLs as strings, both accepted by generateText', async () => {
    const store = new TieredStore({ logger: false });
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const user: ModelMessage = {
      role: 'user',
      content: [
        { type: 'text', text: 'Compare these' },
        { type: 'image', image: png, mediaType: 'image/png' },
        { type: 'image', image: new URL('https://example.com/cat.png') },
        { type: 'file', data: Buffer.from('%PDF-1.4'), mediaType: 'application/pdf', filename: 'a.pdf' },
      ],
      providerOptions: { openai: { imageDetail: 'low' } },
    };
    await saveModelMessages(store, 'ai3', [user], { meta: { source: 'test' } });
    const [stored] = await store.getHistory('ai3');
    expect(stored?.content).toBe('Compare these\n[image]\n[image]\n[file a.pdf]');
    expect(stored?.meta?.source).toBe('test');
    const [back] = await loadModelMessages(store, 'ai3');
    expect(back).toEqual({
      role: 'user',
      content: [
        { type: 'text', text: 'Compare these' },
        { type: 'image', image: Buffer.from(png).toString('base64'), mediaType: 'image/png' },
        { type: 'image', image: 'https://example.com/cat.png' },
        { type: 'file', data: Buffer.from('%PDF-1.4').toString('base64'), mediaType: 'application/pdf', filename: 'a.pdf' },
      ],
      providerOptions: { openai: { imageDetail: 'low' } },
    });
    const model = mockModel(text('ok'));
    await generateText({ model, messages: [back as ModelMessage] });
    const parts = model.doGenerateCalls[0]?.prompt[0]?.content as Array<{ type: string; data?: unknown }>;
    expect(parts.map((p) => p.type)).toEqual(['text', 'file', 'file', 'file']);
    expect(parts[2]?.data).toEqual(new URL('https://example.com/cat.png'));
    await store.close();
  });

  it('plain messages written with addMemory become string-content messages', async () => {
    const store = new TieredStore({ logger: false });
    await store.addMemory('ai4', 'system', 'Be brief.');
    await store.addMemory('ai4', 'user', 'hi', { meta: { telegramMessageId: 5 } });
    await store.addMemory('ai4', 'assistant', 'hello');
    expect(await loadModelMessages(store, 'ai4')).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ]);
    await store.close();
  });

  it('a window that starts with tool results drops them (their call is outside it); limit is the store’s', async () => {
    const store = new TieredStore({ logger: false });
    await turn(store, 'ai5', 'Weather in Paris?', new MockLanguageModelV3({ doGenerate: [toolCall('call-1', 'Paris'), text('18°C.')] }));
    expect((await loadModelMessages(store, 'ai5', { limit: 2 })).map((m) => m.role)).toEqual(['assistant']);
    expect((await loadModelMessages(store, 'ai5', { limit: 3 })).map((m) => m.role)).toEqual(['assistant', 'tool', 'assistant']);
    await generateText({ model: mockModel(text('ok')), messages: await loadModelMessages(store, 'ai5', { limit: 2 }) });
    await store.close();
  });

  it('thread picks the conversation that loadModelMessages reads and saveModelMessages writes', async () => {
    const store = new TieredStore({ logger: false });
    await store.addMemory('ai10', 'user', 'in main');
    const saved = await saveModelMessages(
      store,
      'ai10',
      [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: 'Sunny.' },
      ],
      {
        thread: 'trip',
      },
    );
    expect(saved.map((m) => m.thread)).toEqual(['trip', 'trip']);
    expect(await loadModelMessages(store, 'ai10', { thread: 'trip' })).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: 'Sunny.' },
    ]);
    expect(await loadModelMessages(store, 'ai10', { thread: 'trip', limit: 1 })).toEqual([{ role: 'assistant', content: 'Sunny.' }]);
    expect(await loadModelMessages(store, 'ai10')).toEqual([{ role: 'user', content: 'in main' }]);
    await expect(saveModelMessages(store, 'ai10', [{ role: 'user', content: 'x' }], { thread: 'bad id' })).rejects.toMatchObject({ code: 'INVALID_THREAD' });
    expect(contents(await store.getHistory('ai10', { thread: 'trip' }))).toEqual(['user:Weather in Paris?', 'assistant:Sunny.']);
    await store.close();
  });

  it('a tool message stored without AI SDK parts cannot be a ToolModelMessage: INVALID_META names it', async () => {
    const store = new TieredStore({ logger: false });
    await store.addMemory('ai6', 'user', 'q');
    const tool = await store.addMemory('ai6', 'tool', 'plain result');
    await expect(loadModelMessages(store, 'ai6')).rejects.toMatchObject({ code: 'INVALID_META', message: expect.stringContaining(tool.id) });
    await store.close();
  });

  it('what JSON cannot hold is refused with INVALID_META before any message of the batch is written', async () => {
    const store = new TieredStore({ logger: false });
    const messages: ModelMessage[] = [
      { role: 'user', content: 'first' },
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'c', toolName: 't', input: { n: 10n } }] },
    ];
    await expect(saveModelMessages(store, 'ai7', messages)).rejects.toMatchObject({ code: 'INVALID_META' });
    expect(() => fromModelMessage(messages[1] as ModelMessage)).toThrow(expect.objectContaining({ code: 'INVALID_META' }));
    expect(await store.getHistory('ai7')).toEqual([]);
    await store.close();
  });

  it('the store’s size limits still apply: an oversized part is refused with INVALID_META and that message is not written', async () => {
    const store = new TieredStore({ logger: false, limits: { metaBytes: 1024 } });
    const big: ModelMessage = { role: 'user', content: [{ type: 'image', image: new Uint8Array(2048), mediaType: 'image/png' }] };
    await expect(saveModelMessages(store, 'ai8', [big])).rejects.toMatchObject({ code: 'INVALID_META' });
    expect(await store.getHistory('ai8')).toEqual([]);
    await store.close();
  });

  it('imports only types from ai, so the library never loads the AI SDK itself', () => {
    const source = readFileSync(new URL('../src/integrations/ai.ts', import.meta.url), 'utf8');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    }).outputText;
    expect(source).toMatch(/from 'ai'/);
    expect(js).not.toMatch(/from ['"]ai['"]/);
  });
});

describe('AI SDK with a real Redis + PostgreSQL store', () => {
  const iso = isolation('ai sdk adapter');
  afterAll(async () => {
    await cleanupRedis(redisUrl(), iso.keyPrefix);
    await cleanupPostgres(databaseUrl(), iso.schema);
  });

  it('two generateText turns, then a fresh store (and a PostgreSQL-only one) gives back messages the next turn accepts', async () => {
    const store = makeStore('write-through', iso);
    const first = await turn(store, 'bob', 'Weather in Paris?', new MockLanguageModelV3({ doGenerate: [toolCall('call-1', 'Paris'), text('18°C.')] }));
    const second = await turn(store, 'bob', 'Thanks!', new MockLanguageModelV3({ doGenerate: [text('You are welcome.')] }));
    await store.close();
    const expected = [
      { role: 'user', content: 'Weather in Paris?' },
      ...first.response.messages,
      { role: 'user', content: 'Thanks!' },
      ...second.response.messages,
    ];

    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    expect(await loadModelMessages(durable, 'bob')).toEqual(expected);
    await durable.close();

    const again = makeStore('write-through', iso);
    expect(await loadModelMessages(again, 'bob')).toEqual(expected);
    const next = new MockLanguageModelV3({ doGenerate: [text('Bye.')] });
    await turn(again, 'bob', 'Bye', next);
    expect(next.doGenerateCalls[0]?.prompt.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user', 'assistant', 'user']);
    expect(contents(await again.getHistory('bob', { limit: 2 }))).toEqual(['user:Bye', 'assistant:Bye.']);
    await again.close();
  });
});
