import { describe, expect, it, vi } from 'vitest';
import { decodeMessage, decodeOp, decodeStored, denseId, encodeMessage, encodeOp, sparseId } from '../src/model/codec.js';
import { defaultTokens } from '../src/model/budget.js';
import { ErrorCode, MemoryAdapter, TierError } from '../src/index.js';
import { createIdGenerator, idTime } from '../src/model/ids.js';
import { Secrets, silentLogger } from '../src/logger.js';
import type { AppendOp, Op } from '../src/model/ops.js';
import { MAX_HISTORY_LIMIT, resolveOptions } from '../src/options.js';
import { Breaker } from '../src/routing/breaker.js';

const next = createIdGenerator();

describe('codec', () => {
  it('round-trips messages and every kind of op; the encoding starts with the id for Lua', () => {
    const append: AppendOp = {
      kind: 'append',
      user: 'u',
      id: next(),
      thread: 'main',
      role: 'assistant',
      content: 'héllo "quoted"\n',
      createdAt: 1_700_000_000_000,
      meta: { a: [1, null] },
      key: 'k1',
    };
    const ops: Op[] = [
      append,
      { kind: 'phone', user: 'u', id: next(), phone: '+79991234567' },
      { kind: 'phone', user: 'u', id: next(), phone: null },
      { kind: 'booking', user: 'u', id: next(), booking: { service: 'cut', at: '10:00' } },
      { kind: 'subscribe', user: 'u', id: next(), subscribed: false },
      { kind: 'clear', user: 'u', id: next(), thread: 'main' },
      { kind: 'clear', user: 'u', id: next(), thread: 'topic-42' },
      { kind: 'delete', user: 'u', id: next() },
      { ...append, id: next(), thread: 'topic-42', status: 'streaming', key: undefined as never },
      {
        kind: 'edit',
        user: 'u',
        id: next(),
        thread: 't',
        target: append.id,
        content: 'new "text"',
        meta: { m: 1 },
        status: 'aborted',
        updatedAt: 1_700_000_000_001,
      },
      { kind: 'edit', user: 'u', id: next(), thread: 'main', target: append.id, content: '' },
      { kind: 'cut', user: 'u', id: next(), thread: 't', from: `${append.id}!`, to: next() },
      { kind: 'title', user: 'u', id: next(), thread: 't', title: 'Стрижка "в пятницу"' },
      { kind: 'title', user: 'u', id: next(), thread: 't', title: null },
      { kind: 'dropThread', user: 'u', id: next(), thread: 't' },
    ];
    // The spread above leaves an explicit undefined key: drop it so the round trip compares like with like.
    delete (ops[9] as AppendOp).key;
    for (const op of ops) {
      const text = encodeOp(op);
      // Lua reads the id by position: after the role of a (compact) message, after {"id":" of any other op.
      expect(op.kind === 'append' ? text.slice(1, 23) === denseId(op.id) : text.startsWith(`{"id":"${op.id}"`)).toBe(true);
      expect(decodeOp('u', text)).toEqual(op);
    }
    const message = decodeMessage(encodeMessage(append));
    expect(message).toEqual({
      id: append.id,
      role: 'assistant',
      content: append.content,
      createdAt: new Date(append.createdAt),
      meta: { a: [1, null] },
      thread: 'main',
      tokens: defaultTokens(append),
    });
    expect('key' in message).toBe(false);
    // 0.1's items carry no thread: they read as the list's thread ('main' unless told).
    const old = `{"id":"${append.id}","role":"user","content":"hi","createdAt":1}`;
    expect(decodeMessage(old).thread).toBe('main');
    expect(decodeMessage(old, 'topic').thread).toBe('topic');
    expect(decodeOp('u', old)).toMatchObject({ kind: 'append', thread: 'main' });
    expect(decodeOp('u', `{"id":"${append.id}","kind":"clear"}`)).toEqual({ kind: 'clear', user: 'u', id: append.id, thread: 'main' });
    // An edited item carries its edit stamp right after the id and flags, where Lua reads it; it never reaches a Message.
    const stamp = next();
    const stamped = encodeMessage({ ...append, v: stamp });
    expect(stamped.slice(23, 49)).toBe(stamp);
    expect('0123456789ABCDEFGHIJKLMNOPQRSTUV'.indexOf(stamped.charAt(0)) & 1).toBe(1);
    expect('v' in decodeMessage(stamped)).toBe(false);
    expect(decodeStored('u', stamped)).toEqual({ ...append, v: stamp });
  });
});

describe('compact messages (Redis items)', () => {
  const base = (content: string): AppendOp => {
    const id = next();
    return { kind: 'append', user: 'u', id, thread: 'main', role: 'user', content, createdAt: idTime(id) };
  };

  it('is a head (role x 8 + flags), the id in 22 characters and the content: createdAt from the id, a default token count as a flag', () => {
    const op = { ...base('Hi! Could you book me a haircut?'), tokens: defaultTokens({ content: 'Hi! Could you book me a haircut?' }) };
    const text = encodeMessage(op);
    // 'C': user (1) x 8 + flags 4.
    expect(text).toBe(`C${denseId(op.id)}Hi! Could you book me a haircut?`);
    expect(text.length).toBe(op.content.length + 23);
    expect(decodeStored('u', text)).toEqual(op);
    expect(decodeMessage(text)).toEqual({ id: op.id, role: 'user', content: op.content, createdAt: new Date(op.createdAt), thread: 'main', tokens: op.tokens });
    // No count at all (0.1's ops, a draft's start) stays none: the flag tells the two apart.
    const none = base('no count');
    expect(encodeMessage(none)).toBe(`8${denseId(none.id)}no count`);
    expect(decodeStored('u', encodeMessage(none))).toEqual(none);
  });

  it('reads the time a dense id encodes as idTime does, over the whole 50-bit range', () => {
    const times = [0, 1, 1023, 1_048_575, 1_048_576, Date.now(), 2 ** 40 + 12_345, 2 ** 49, 2 ** 50 - 1];
    for (let i = 0; i < 200; i++) times.push(Math.floor(Math.random() * 2 ** 50));
    for (const time of times) {
      const id = createIdGenerator(() => time)();
      const op: AppendOp = { kind: 'append', user: 'u', id, thread: 'main', role: 'assistant', content: 'x', createdAt: time };
      const text = encodeMessage(op);
      expect(text.length).toBe(24); // dense: createdAt left to the id
      expect(decodeMessage(text).createdAt.getTime()).toBe(time);
      expect(decodeStored('u', text)).toEqual(op);
    }
  });

  it('keeps the rare fields in a JSON tail before the content, which may hold anything', () => {
    const tricky = '{"id":"not a header"}\nsecond line\n\n,"u":5}';
    const id = next();
    const op: AppendOp = {
      kind: 'append',
      user: 'u',
      id,
      thread: 'topic-1',
      role: 'tool',
      content: tricky,
      createdAt: idTime(id) - 5,
      key: 'upd:"1"\n',
      meta: { u: 1, nested: { c: 2 } },
      status: 'streaming',
      tokens: 99,
      updatedAt: 1_700_000_000_123,
    };
    const text = encodeMessage(op);
    // The head of a tool message with a tail: 3 x 8 + 2 = 26, 'Q'.
    expect(text.startsWith(`Q${denseId(id)}{"c":${op.createdAt},"h":"topic-1","k":`)).toBe(true);
    expect(text.endsWith(`,"u":1700000000123}\n${tricky}`)).toBe(true);
    expect(decodeStored('u', text)).toEqual(op);
    expect(decodeOp('u', text)).toEqual(op);
    expect(decodeMessage(text, 'ignored: the item names its thread')).toMatchObject({ thread: 'topic-1', content: tricky, tokens: 99 });
    // An id the store did not make keeps the longer form (role letter, the id as it is, a flags digit), and its createdAt.
    const odd = { ...base('x'), id: 'zzzzzzzzzzzzzzzzzzzzzzzzzz', createdAt: 0 };
    expect(encodeMessage(odd)).toBe('uzzzzzzzzzzzzzzzzzzzzzzzzzz2{"c":0}\nx');
    expect(decodeStored('u', encodeMessage(odd))).toEqual(odd);
    // Dense ids sort like the ids they stand for, and map back.
    const ids = Array.from({ length: 200 }, () => next());
    ids.push('00000000000000000000000000', 'ZZZZZZZZZZZZZZZZZZZZZZZZZZ');
    for (const x of ids) expect(sparseId(denseId(x))).toBe(x);
    const byDense = [...ids].sort((x, y) => (denseId(x) < denseId(y) ? -1 : 1));
    expect(byDense).toEqual([...ids].sort());
    // Not something the store wrote: a typed error, not a wrong message.
    expect(() => decodeMessage('x')).toThrow(expect.objectContaining({ code: ErrorCode.UNREADABLE_ENTRY }));
    for (const text of ['Hello there', 'A short', 'unknown text of some length, more than 28 characters']) {
      expect(() => decodeOp('u', text)).toThrow(expect.objectContaining({ code: ErrorCode.UNREADABLE_ENTRY }));
    }
  });
});

describe('options', () => {
  it('has documented defaults', () => {
    const resolved = resolveOptions({});
    expect(resolved).toMatchObject({
      historyLimit: 50,
      writeMode: 'write-through',
      probeIntervalMs: 1000,
      journalLimit: 100_000,
      syncBatchSize: 5000,
      retention: {},
    });
    expect(resolved.ttlMs).toEqual({ history: 3_600_000, userData: 3_600_000, subscribers: 86_400_000 });
    expect(resolved.l1).toEqual({ maxBytes: 32 * 1024 * 1024 });
    expect(resolveOptions({ l1: true }).l1).toEqual({ maxBytes: 32 * 1024 * 1024 });
    expect(resolveOptions({ l1: false }).l1).toBe(false);
    expect(resolveOptions({ l1: { maxBytes: 1000 } }).l1).toEqual({ maxBytes: 1000 });
  });

  it.each([
    ['historyLimit above the maximum', { historyLimit: MAX_HISTORY_LIMIT + 1 }],
    ['a fractional historyLimit', { historyLimit: 2.5 }],
    ['a negative probe interval', { probeIntervalMs: -1 }],
    ['a NaN journal limit', { journalLimit: Number.NaN }],
    ['keepLast below historyLimit', { historyLimit: 20, retention: { keepLast: 10 } }],
    ['a zero maxAgeDays', { retention: { maxAgeDays: 0 } }],
    ['a limit of 0 bytes', { limits: { contentBytes: 0 } }],
    ['an L1 of 0 bytes', { l1: { maxBytes: 0 } }],
    ['an L1 that is not an object', { l1: 'on' as never }],
  ])('refuses %s with INVALID_OPTION', (_name, options) => {
    expect(() => resolveOptions(options)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_OPTION }));
  });
});

describe('breaker', () => {
  /** A tier over a MemoryAdapter whose calls can be made to fail as if unreachable. */
  function tierWithOutage() {
    const adapter = new MemoryAdapter();
    let reachable = true;
    const unreachable = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
    vi.spyOn(adapter as { isUnavailable(error: unknown): boolean }, 'isUnavailable').mockImplementation((error: unknown) => error === unreachable);
    vi.spyOn(adapter, 'ping').mockImplementation(async () => {
      if (!reachable) throw unreachable;
    });
    const hooks = {
      probeIntervalMs: 10,
      logger: silentLogger,
      secrets: new Secrets(),
      recover: vi.fn(async () => {}),
      onDown: vi.fn(),
      onError: vi.fn(),
      onUp: vi.fn(),
    };
    const tier = new Breaker(adapter, hooks);
    const call = vi.fn(async () => {
      if (!reachable) throw unreachable;
      return 'ok';
    });
    return { tier, hooks, call, setReachable: (value: boolean) => (reachable = value) };
  }

  it('an unreachable tier is marked down, later calls fail at once without touching it, and a probe takes it back up', async () => {
    const { tier, hooks, call, setReachable } = tierWithOutage();
    setReachable(false);
    await expect(tier.call(call)).rejects.toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE });
    expect(tier.up).toBe(false);
    expect(hooks.onDown).toHaveBeenCalledTimes(1);
    await expect(tier.call(call)).rejects.toBeInstanceOf(TierError);
    expect(call).toHaveBeenCalledTimes(1);
    setReachable(true);
    expect(await tier.probe()).toBe(true);
    expect(hooks.recover).toHaveBeenCalledTimes(1);
    expect(hooks.onUp).toHaveBeenCalledTimes(1);
    expect(await tier.call(call)).toBe('ok');
    tier.stop();
  });

  it('an error that is not an outage passes through as TIER_ERROR and leaves the tier up', async () => {
    const { tier } = tierWithOutage();
    await expect(tier.call(async () => Promise.reject(new Error('WRONGTYPE')))).rejects.toMatchObject({ code: ErrorCode.TIER_ERROR });
    expect(tier.up).toBe(true);
    tier.stop();
  });
});
