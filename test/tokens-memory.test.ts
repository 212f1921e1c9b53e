import { getEncoding } from 'js-tiktoken';
import { describe, expect, it } from 'vitest';
import { ConfigurationError, ErrorCode, TieredStore } from '../src/index.js';
import { loadModelMessages } from '../src/integrations/ai.js';
import { TieredChatMessageHistory } from '../src/integrations/langchain.js';

// Issue 14 without servers: the memory store with a real tokenizer's countTokens, and the
// integrations' maxTokens.

const enc = getEncoding('cl100k_base');
const countTokens = ({ content }: { content: string }) => enc.encode(content).length;

describe('token counts on the memory store', () => {
  it("stores js-tiktoken's count with each message and budget reads add those counts up", async () => {
    const store = new TieredStore({ logger: false, countTokens });
    const texts = ['The quick brown fox jumps over the lazy dog.', 'Съешь же ещё этих мягких французских булок', 'ok'];
    for (const text of texts) await store.addMemory('u', 'user', text);
    const history = await store.getHistory('u');
    expect(history.map((m) => m.tokens)).toEqual(texts.map((t) => enc.encode(t).length));
    const lastTwo = enc.encode(texts[1]!).length + enc.encode(texts[2]!).length;
    expect((await store.getHistory('u', { maxTokens: lastTwo })).map((m) => m.content)).toEqual(texts.slice(1));
    expect((await store.getHistory('u', { maxTokens: lastTwo - 1 })).map((m) => m.content)).toEqual(texts.slice(2));
    await store.close();
  });

  it('defaults to ceil(UTF-8 bytes / 4) + 4', async () => {
    const store = new TieredStore({ logger: false });
    expect((await store.addMemory('u', 'user', 'héllo 🌍')).tokens).toBe(Math.ceil(11 / 4) + 4);
    expect((await store.addMemory('u', 'user', '')).tokens).toBe(4);
    await store.close();
  });

  it('refuses a countTokens that is not a function', () => {
    expect(() => new TieredStore({ logger: false, countTokens: 5 as never })).toThrow(ConfigurationError);
  });

  it('passes maxTokens through the LangChain history and the AI SDK loader', async () => {
    const store = new TieredStore({ logger: false, countTokens: () => 10 });
    for (const text of ['one', 'two', 'three']) await store.addMemory('u', 'user', text);
    const history = new TieredChatMessageHistory({ store, userId: 'u', maxTokens: 20 });
    expect((await history.getMessages()).map((m) => m.content)).toEqual(['two', 'three']);
    expect(() => new TieredChatMessageHistory({ store, userId: 'u', maxTokens: 0 })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_OPTION }));
    expect((await loadModelMessages(store, 'u', { maxTokens: 10 })).map((m) => m.content)).toEqual(['three']);
    await store.close();
  });
});
