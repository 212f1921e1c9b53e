import type { ModelMessage } from 'ai';
import { ErrorCode, ValidationError } from '../errors.js';
import type { TieredStore } from '../store.js';
import type { JsonObject, JsonValue, Message, Role, UserId } from '../types.js';
import { checkMetaJson, checkThread } from '../model/validate.js';
import { dropLeadingToolResults } from '../model/window.js';

// Types only from ai: this module never loads the AI SDK, the app that imports it does.

/** The key of `Message.meta` under which the AI SDK's message parts are kept. */
export const AI_SDK_META_KEY = 'aiSdk';

/** A {@link ModelMessage} as the arguments of {@link TieredStore.addMemory}. */
export interface StoredModelMessage {
  role: Role;
  /** Readable text: text parts as they are, tool calls and results as one line each. */
  content: string;
  /** The structured parts (`meta.aiSdk.content`) and message `providerOptions`, plus the caller's meta. */
  meta?: JsonObject;
}

type Part = { type: string; [key: string]: unknown };

/**
 * Converts one AI SDK message for the store. String content is stored as it is; an array of parts
 * (tool calls, tool results, images, ...) is kept in `meta.aiSdk.content` with binary data as
 * base64 and URLs as strings, and summarised as readable `content`.
 * @param meta Your own meta, stored beside `aiSdk`.
 * @throws ValidationError `INVALID_META` when a part holds something JSON cannot (a BigInt, a Map, ...)
 */
export function fromModelMessage(message: ModelMessage, meta?: JsonObject): StoredModelMessage {
  const saved: JsonObject = {};
  if (typeof message.content !== 'string') saved.content = toJson(message.content) as JsonValue[];
  if (message.providerOptions !== undefined) saved.providerOptions = toJson(message.providerOptions) as JsonObject;
  const extra = Object.keys(saved).length > 0 ? { ...meta, [AI_SDK_META_KEY]: saved } : meta;
  const merged = extra === undefined ? undefined : checkMetaJson(extra);
  const content = typeof message.content === 'string' ? message.content : readable(saved.content as Part[]);
  return merged === undefined ? { role: message.role, content } : { role: message.role, content, meta: merged };
}

/**
 * Stored history as `messages` for `generateText`/`streamText`. Tool results at the start, whose
 * calls fell outside the history window, are left out: no provider accepts them without the call.
 * @throws ValidationError `INVALID_META` for a `tool` message stored without AI SDK parts
 */
export function toModelMessages(messages: readonly Message[]): ModelMessage[] {
  return dropLeadingToolResults(messages).map(toModelMessage);
}

/**
 * Appends messages (e.g. a `response.messages`) in order and returns them as stored. Every message
 * is converted and checked before the first is written; only the store's size limits
 * (`CONTENT_TOO_LARGE`, `INVALID_META`) can stop a batch part way, keeping the messages before.
 * `thread` picks the conversation they go to (default 'main'; a bad id fails before any write).
 */
export async function saveModelMessages(
  store: TieredStore,
  userId: UserId,
  messages: readonly ModelMessage[],
  options: { meta?: JsonObject; thread?: string } = {},
): Promise<Message[]> {
  const thread = checkThread(options.thread);
  const stored = messages.map((message) => fromModelMessage(message, options.meta));
  const saved: Message[] = [];
  for (const { role, content, meta } of stored) saved.push(await store.addMemory(userId, role, content, meta === undefined ? { thread } : { meta, thread }));
  return saved;
}

/**
 * The user's history as {@link ModelMessage}s: `toModelMessages(await store.getHistory(userId, options))`.
 * `thread` picks the conversation (default 'main'), `limit` the number of newest messages,
 * `maxTokens` a token budget (the newest messages whose stored counts fit it, tool calls kept
 * with their results, drafts left out).
 */
export async function loadModelMessages(
  store: TieredStore,
  userId: UserId,
  options: { limit?: number; thread?: string; maxTokens?: number } = {},
): Promise<ModelMessage[]> {
  return toModelMessages(await store.getHistory(userId, options));
}

/**
 * What fits the model as {@link ModelMessage}s: the thread's rolling summary first, as a system
 * message, then the newest messages it does not cover within `maxTokens` (summary included); see
 * {@link TieredStore.getContext}.
 */
export async function loadContext(store: TieredStore, userId: UserId, options: { thread?: string; maxTokens: number }): Promise<ModelMessage[]> {
  const context = await store.getContext(userId, options);
  const messages = toModelMessages(context.messages);
  if (context.summary === null) return messages;
  return [{ role: 'system', content: `Summary of the conversation so far:\n${context.summary}` }, ...messages];
}

function toModelMessage(message: Message): ModelMessage {
  const saved = message.meta?.[AI_SDK_META_KEY];
  const extra = saved !== null && typeof saved === 'object' && !Array.isArray(saved) ? saved : {};
  const content = Array.isArray(extra.content) && message.role !== 'system' ? extra.content : message.content;
  if (message.role === 'tool' && typeof content === 'string') {
    throw new ValidationError(
      ErrorCode.INVALID_META,
      `message ${message.id} has role tool but no meta.${AI_SDK_META_KEY}.content, so it cannot be a ToolModelMessage (store tool results with saveModelMessages)`,
    );
  }
  const providerOptions = extra.providerOptions;
  return (providerOptions === undefined ? { role: message.role, content } : { role: message.role, content, providerOptions }) as ModelMessage;
}

function readable(parts: readonly Part[]): string {
  return parts
    .map(summarize)
    .filter((line) => line !== '')
    .join('\n');
}

function summarize(part: Part): string {
  switch (part.type) {
    case 'text':
      return String(part.text);
    case 'tool-call':
      return `[tool call ${String(part.toolName)} ${JSON.stringify(part.input ?? null)}]`;
    case 'tool-result': {
      const output = part.output as { type: string; value?: unknown; reason?: string };
      const value =
        output.type === 'execution-denied'
          ? `denied${output.reason ? `: ${output.reason}` : ''}`
          : typeof output.value === 'string'
            ? output.value
            : JSON.stringify(output.value);
      return `[tool result ${String(part.toolName)}${output.type.startsWith('error') ? ' error' : ''}] ${value}`;
    }
    case 'image':
      return '[image]';
    case 'file':
      return `[file ${String(part.filename ?? part.mediaType)}]`;
    default:
      return ''; // reasoning and tool approvals are kept in meta, not shown as text
  }
}

/** What the AI SDK accepts in place of binary data and URLs, in a form JSON can hold. */
function toJson(value: unknown): unknown {
  if (value instanceof URL) return value.href;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (value instanceof ArrayBuffer) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map(toJson);
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return value; // the store refuses what JSON cannot hold
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, item]) => item !== undefined)
      .map(([key, item]) => [key, toJson(item)]),
  );
}
