import { defaultTokens, withinBudget } from './budget.js';
import type { Message } from '../types.js';

/**
 * A message's token count: its own `tokens` when it carries one (token counts, issue 14 part 1),
 * else the default estimate. Every count of the summarizer and getContext goes through here.
 */
export function tokensOf(message: { content: string; tokens?: number | undefined }): number {
  return message.tokens ?? defaultTokens(message);
}

/** The tokens of a summary's text, as a message of it would count. */
export function summaryTokens(text: string): number {
  return defaultTokens({ content: text });
}

export interface Context {
  summary: string | null;
  messages: Message[];
  tokens: number;
}

/**
 * The summary plus the newest of `after` (the messages it does not cover, oldest first) that fit
 * `maxTokens` with it, chosen by withinBudget (tool calls stay with their results, drafts still
 * streaming are left out). A summary larger than the whole budget is left out (summary null).
 */
export function contextWithin(summary: string | null, after: readonly Message[], maxTokens: number): Context {
  const own = summary === null ? 0 : summaryTokens(summary);
  const kept = summary !== null && own <= maxTokens ? summary : null;
  const budget = maxTokens - (kept === null ? 0 : own);
  const counted = after.map((message) => {
    const unit: Pick<Message, 'role' | 'status'> & { message: Message; tokens: number } = { message, role: message.role, tokens: tokensOf(message) };
    if (message.status !== undefined) unit.status = message.status;
    return unit;
  });
  const picked = withinBudget(counted, budget);
  const tokens = picked.reduce((sum, m) => sum + m.tokens, kept === null ? 0 : own);
  return { summary: kept, messages: picked.map((m) => m.message), tokens };
}
