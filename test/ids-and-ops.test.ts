import { describe, expect, it } from 'vitest';
import { createIdGenerator, idTime } from '../src/model/ids.js';
import { after, applyOp, emptyUserState, mergeHistory, type AppendOp, type Op } from '../src/model/ops.js';
import { Secrets } from '../src/logger.js';

describe('ids', () => {
  it('sort by time, encode it, and strictly increase when the clock stalls or steps back', () => {
    const times = [1000, 1000, 1000, 999, 5000, 4000];
    const next = createIdGenerator(() => times.shift() ?? 0);
    const ids = Array.from({ length: 6 }, next);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(6);
    expect(idTime(ids[0]!)).toBe(1000);
    expect(idTime(ids[3]!)).toBe(1000);
    expect(idTime(ids[4]!)).toBe(5000);
    expect(ids[0]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it('stay ordered over many ids in one millisecond', () => {
    const next = createIdGenerator(() => 42);
    const ids = Array.from({ length: 10_000 }, next);
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1]!)).toBe(true);
  });
});

describe('ops converge whatever the order they are applied in', () => {
  const next = createIdGenerator();
  const user = 'u';
  const append = (content: string, thread = 'main'): AppendOp => ({ kind: 'append', user, id: next(), thread, role: 'user', content, createdAt: 0 });
  const ops: Op[] = [
    append('a'),
    { kind: 'phone', user, id: next(), phone: '+111111111' },
    append('b'),
    append('t1', 't'),
    { kind: 'clear', user, id: next(), thread: 'main' },
    append('c'),
    append('t2', 't'),
    { kind: 'title', user, id: next(), thread: 't', title: 'first' },
    append('t3', 't'),
    { kind: 'title', user, id: next(), thread: 't', title: 'second' },
    append('t4', 't'),
    { kind: 'subscribe', user, id: next(), subscribed: true },
    { kind: 'phone', user, id: next(), phone: '+222222222' },
    { kind: 'booking', user, id: next(), booking: { s: 1 } },
    append('d'),
    { kind: 'subscribe', user, id: next(), subscribed: false },
  ];
  const fold = (list: Op[]) => {
    const state = emptyUserState();
    for (const op of list) applyOp(state, op);
    return { ...state, messages: state.messages.map((m) => m.content) };
  };

  it('in order, reversed, shuffled and applied twice', () => {
    const expected = fold(ops);
    expect(expected).toMatchObject({ messages: ['t1', 'c', 't2', 't3', 't4', 'd'], phone: { value: '+222222222' }, subscribed: { value: false } });
    expect(expected.threads.get('t')?.title.value).toBe('second');
    expect(fold([...ops].reverse())).toEqual(expected);
    expect(fold([...ops, ...ops])).toEqual(expected);
    const shuffled = [...ops].sort((x, y) => (x.id.charCodeAt(25) % 7) - (y.id.charCodeAt(25) % 7));
    expect(fold(shuffled)).toEqual(expected);
  });

  it('a delete wins over every older op, and later ops apply again', () => {
    const del: Op = { kind: 'delete', user, id: next() };
    const after = append('after');
    const state = fold([...ops, del, ...ops, after]);
    expect(state).toMatchObject({ messages: ['after'], phone: { value: null }, booking: { value: null }, subscribed: { value: false } });
  });

  it('mergeHistory lays pending ops over a durable read, respecting its floor and cuts', () => {
    const durable = [append('x'), append('y')].map((op) => ({
      id: op.id,
      role: op.role,
      content: op.content,
      createdAt: new Date(0),
      tokens: 5,
      thread: 'main',
    }));
    const floor = next();
    const late = append('late');
    const cutAway = append('cut away');
    const older: AppendOp = { ...append('older than the floor'), id: '0'.repeat(26) };
    const elsewhere = append('other thread', 't');
    expect(mergeHistory(durable, { floor: '' }, user, 'main', [late, elsewhere], 2).map((m) => m.content)).toEqual(['y', 'late']);
    expect(mergeHistory([], { floor, cuts: [[cutAway.id, cutAway.id]] }, user, 'main', [older, cutAway, late], 10).map((m) => m.content)).toEqual(['late']);
    const edit: Op = { kind: 'edit', user, id: next(), thread: 'main', target: durable[0]!.id, content: 'x edited', updatedAt: 5 };
    const merged = mergeHistory(durable, { floor: '' }, user, 'main', [edit], 10);
    expect(merged.map((m) => m.content)).toEqual(['x edited', 'y']);
    expect(merged[0]?.updatedAt).toEqual(new Date(5));
  });

  it('edits: the newest by op id wins in any order, an edit of a missing message writes nothing, a cut is never undone', () => {
    const m = append('original');
    const older: Op = { kind: 'edit', user, id: next(), thread: 'main', target: m.id, content: 'older', meta: { a: 1 } };
    const newer: Op = { kind: 'edit', user, id: next(), thread: 'main', target: m.id, content: 'newer' };
    const cut: Op = { kind: 'cut', user, id: next(), thread: 'main', from: m.id, to: m.id };
    expect(fold([m, newer, older]).messages).toEqual(['newer']);
    expect(fold([m, older, newer]).messages).toEqual(['newer']);
    expect(fold([older, newer]).messages).toEqual([]);
    expect(fold([m, cut, m, newer]).messages).toEqual([]);
    expect(fold([cut, m]).messages).toEqual([]);
    const truncate: Op = { kind: 'cut', user, id: next(), thread: 'main', from: after(m.id), to: next() };
    const later = append('after the truncation');
    const between = append('between');
    expect(fold([m, truncate, later]).messages).toEqual(['original', 'after the truncation']);
    // 'between' was made after the truncation's 'to': it stays.
    expect(fold([truncate, m, between]).messages).toEqual(['original', 'between']);
  });

  it('a dropped thread loses its messages and title; a deleted user loses every thread', () => {
    const a = append('a', 't');
    const title: Op = { kind: 'title', user, id: next(), thread: 't', title: 'T' };
    const drop: Op = { kind: 'dropThread', user, id: next(), thread: 't' };
    const state = fold([a, title, append('m'), drop, a, title]);
    expect(state.messages).toEqual(['m']);
    expect(state.threads.get('t')?.title.value).toBeNull();
    const m = append('m');
    const del: Op = { kind: 'delete', user, id: next() };
    const gone = fold([a, title, m, del, a, m]);
    expect(gone.messages).toEqual([]);
    expect(gone.threads.get('t')?.title.value).toBeNull();
  });
});

describe('secrets', () => {
  it('masks URL passwords and remembered secrets, in errors and their causes too', () => {
    const secrets = new Secrets();
    secrets.add('redis://default:s3cretPass@host:6379');
    expect(secrets.mask('connect to postgres://u:pw123@h/db failed')).toBe('connect to postgres://u:***@h/db failed');
    expect(secrets.mask('WRONGPASS s3cretPass is invalid')).toBe('WRONGPASS *** is invalid');
    const error = new Error('auth failed for redis://default:s3cretPass@host', { cause: new Error('s3cretPass') });
    (error as Error & { detail?: string }).detail = 'used s3cretPass';
    const masked = secrets.maskError(error);
    expect(
      JSON.stringify({ m: masked.message, s: masked.stack, d: (masked as Error & { detail?: string }).detail, c: (masked.cause as Error).message }),
    ).not.toContain('s3cretPass');
  });
});
