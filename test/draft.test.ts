import { afterEach, describe, expect, it, vi } from 'vitest';
import { Draft, type DraftHost } from '../src/draft.js';
import { ErrorCode } from '../src/errors.js';
import type { AppendOp, EditOp } from '../src/model/ops.js';

// The draft's coalescing is pure logic over a timer: a host that records what it is asked to write.
afterEach(() => vi.useRealTimers());

function host(flushMs: number) {
  const flushed: EditOp[] = [];
  const committed: EditOp[] = [];
  const h: DraftHost = {
    flushMs,
    flush: async (op) => void flushed.push(op),
    commit: async (op) => void committed.push(op),
    check: (content, meta) => ({ content, meta }),
    count: (content) => content.length,
    closed: () => {},
  };
  return { h, flushed, committed };
}

const start: AppendOp = {
  kind: 'append',
  user: 'u',
  id: '01J0000000000000000000000A',
  thread: 'main',
  role: 'assistant',
  content: '',
  createdAt: 0,
  status: 'streaming',
};

describe('Draft', () => {
  it('writes at most once per flushMs however often update is called, and the last text always', async () => {
    vi.useFakeTimers();
    const { h, flushed, committed } = host(250);
    const draft = new Draft(h, start);
    for (let i = 1; i <= 100; i++) {
      draft.update(`text ${i}`);
      await vi.advanceTimersByTimeAsync(10);
    }
    // 1 s of updates at 100 per second: flushes at 250, 500, 750 and 1000 ms.
    expect(flushed.length).toBeLessThanOrEqual(4);
    expect(flushed.length).toBeGreaterThanOrEqual(3);
    expect(flushed.every((op) => op.status === 'streaming' && op.target === start.id)).toBe(true);
    await vi.advanceTimersByTimeAsync(300);
    expect(flushed.at(-1)?.content).toBe('text 100');
    const message = await draft.finish();
    expect(message).toMatchObject({ id: start.id, content: 'text 100' });
    expect(message.status).toBeUndefined();
    expect(committed).toHaveLength(1);
    expect(committed[0]?.status).toBeUndefined();
    expect(committed[0]?.tokens).toBe('text 100'.length);
    // Ids only grow: the finish wins over every flush in any tier.
    expect(flushed.every((op) => op.id < committed[0]!.id)).toBe(true);
  });

  it('refuses updates and a second finish once closed; abort keeps the text with status aborted', async () => {
    const { h, committed } = host(50);
    const draft = new Draft(h, start);
    draft.update('partial');
    const aborted = await draft.abort();
    expect(aborted).toMatchObject({ content: 'partial', status: 'aborted' });
    expect(committed.map((op) => op.status)).toEqual(['aborted']);
    expect(() => draft.update('more')).toThrow(expect.objectContaining({ code: ErrorCode.DRAFT_CLOSED }));
    await expect(draft.finish('x')).rejects.toMatchObject({ code: ErrorCode.DRAFT_CLOSED });
    await expect(draft.abort()).rejects.toMatchObject({ code: ErrorCode.DRAFT_CLOSED });
  });

  it('stays open when its final write fails, so the caller can retry', async () => {
    const { h } = host(50);
    let fail = true;
    h.commit = async () => {
      if (fail) throw new Error('down');
    };
    const draft = new Draft(h, start);
    await expect(draft.finish('done')).rejects.toThrow('down');
    fail = false;
    await expect(draft.finish('done')).resolves.toMatchObject({ content: 'done' });
  });
});
