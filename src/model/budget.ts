import type { Message } from '../types.js';

/** What a budget needs of a message. */
export type Counted = Pick<Message, 'role' | 'status'> & { tokens: number };

/**
 * The newest messages that fit `maxTokens` (and `limit`), oldest first, for a model's context:
 * - drafts still streaming are left out;
 * - an assistant message and the tool results after it are one unit, kept whole or not at all
 *   (no provider accepts a tool call without its results, or a result without its call);
 * - the window never starts with a tool result;
 * - it is the newest contiguous run: once a unit does not fit, nothing older is taken.
 */
export function withinBudget<M extends Counted>(messages: readonly M[], maxTokens: number, limit = Number.POSITIVE_INFINITY): M[] {
  const usable = messages.filter((m) => m.status !== 'streaming');
  const picked: M[] = [];
  let total = 0;
  let end = usable.length;
  while (end > 0) {
    // The unit ending at `end`: tool results back to the assistant message that called them.
    let start = end - 1;
    while (start > 0 && usable[start]!.role === 'tool') start--;
    if (usable[start]!.role === 'tool') break; // results whose call is not in the history at all
    if (usable[start]!.role !== 'assistant' && start < end - 1) start = end - 1; // results after a non-assistant: not a unit
    const unit = usable.slice(start, end);
    const cost = unit.reduce((sum, m) => sum + m.tokens, 0);
    if (total + cost > maxTokens || picked.length + unit.length > limit) break;
    total += cost;
    picked.unshift(...unit);
    end = start;
  }
  const first = picked.findIndex((m) => m.role !== 'tool');
  return first < 0 ? [] : picked.slice(first);
}

/** The default token count of a message: ceil(UTF-8 bytes / 4) + 4, cheap and tokenizer-free. */
export function defaultTokens(message: { content: string }): number {
  return Math.ceil(Buffer.byteLength(message.content, 'utf8') / 4) + 4;
}
