import { describe, expect, it } from 'vitest';
import { defaultTokens, withinBudget } from '../src/model/budget.js';
import type { Role } from '../src/types.js';

const m = (name: string, role: Role, tokens: number, status?: 'streaming' | 'aborted') => ({ name, role, tokens, ...(status ? { status } : {}) });
const names = (list: { name: string }[]) => list.map((x) => x.name);

describe('withinBudget', () => {
  const history = [
    m('sys', 'system', 10),
    m('q1', 'user', 10),
    m('call', 'assistant', 10),
    m('r1', 'tool', 10),
    m('r2', 'tool', 10),
    m('a1', 'assistant', 10),
    m('q2', 'user', 10),
  ];

  it('takes the newest messages that fit, oldest first', () => {
    expect(names(withinBudget(history, 20))).toEqual(['a1', 'q2']);
    expect(names(withinBudget(history, 1000))).toEqual(names(history));
    expect(withinBudget(history, 9)).toEqual([]);
  });

  it('keeps an assistant tool call with all its results, or none of them', () => {
    expect(names(withinBudget(history, 49))).toEqual(['a1', 'q2']);
    expect(names(withinBudget(history, 50))).toEqual(['call', 'r1', 'r2', 'a1', 'q2']);
    expect(names(withinBudget(history, 59))).toEqual(['call', 'r1', 'r2', 'a1', 'q2']);
  });

  it('never starts with a tool result, and respects the limit', () => {
    const orphaned = [m('r0', 'tool', 5), m('q', 'user', 5)];
    expect(names(withinBudget(orphaned, 100))).toEqual(['q']);
    expect(names(withinBudget(history, 1000, 2))).toEqual(['a1', 'q2']);
    expect(names(withinBudget(history, 1000, 4))).toEqual(['a1', 'q2']);
    expect(names(withinBudget(history, 1000, 5))).toEqual(['call', 'r1', 'r2', 'a1', 'q2']);
  });

  it('leaves out drafts still streaming, keeps aborted ones', () => {
    const drafts = [m('q', 'user', 5), m('cut', 'assistant', 5, 'aborted'), m('live', 'assistant', 5, 'streaming')];
    expect(names(withinBudget(drafts, 100))).toEqual(['q', 'cut']);
  });

  it('stops at the first unit that does not fit (a contiguous window)', () => {
    const list = [m('small', 'user', 1), m('big', 'assistant', 100), m('last', 'user', 1)];
    expect(names(withinBudget(list, 50))).toEqual(['last']);
  });
});

describe('defaultTokens', () => {
  it('is ceil(UTF-8 bytes / 4) + 4', () => {
    expect(defaultTokens({ content: '' })).toBe(4);
    expect(defaultTokens({ content: 'abcd' })).toBe(5);
    expect(defaultTokens({ content: 'abcde' })).toBe(6);
    expect(defaultTokens({ content: 'привет' })).toBe(7); // 12 bytes
  });
});
