import type { Message } from '../types.js';

/**
 * A window of history sent to a model starts with no tool result whose call fell outside it: no
 * provider accepts a tool result without its call.
 */
export function dropLeadingToolResults<M extends Pick<Message, 'role'>>(messages: readonly M[]): M[] {
  const start = messages.findIndex((message) => message.role !== 'tool');
  return start < 0 ? [] : messages.slice(start);
}
