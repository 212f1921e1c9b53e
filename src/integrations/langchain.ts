import { BaseListChatMessageHistory } from '@langchain/core/chat_history';
import { AIMessage, HumanMessage, SystemMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import { ConfigurationError, ErrorCode, ValidationError } from '../errors.js';
import { MAX_HISTORY_LIMIT } from '../options.js';
import type { HistoryOptions, TieredStore } from '../store.js';
import type { JsonObject, Message, Role, UserId } from '../types.js';
import { checkLimit, checkMaxTokens, checkMetaJson, checkThread, userKey } from '../model/validate.js';
import { dropLeadingToolResults } from '../model/window.js';

// The base class and message classes must be loaded at run time: only this subpath loads LangChain.

/** Options of {@link TieredChatMessageHistory}. */
export interface TieredChatMessageHistoryInput {
  /** The store to keep the conversation in; the app owns it and `close()`s it. */
  store: TieredStore;
  /** Whose history this is: with `RunnableWithMessageHistory`, usually the `sessionId`. */
  userId: UserId;
  /**
   * How many of the newest messages `getMessages()` returns.
   * @default the store's `historyLimit`
   */
  limit?: number;
  /**
   * Which of the user's conversations this history reads and writes (1-128 characters of
   * [A-Za-z0-9_-]): e.g. a chat UI's conversation id, with the `sessionId` as the user.
   * @default 'main'
   */
  thread?: string;
  /**
   * A token budget for `getMessages()`: the newest messages whose stored `tokens` (the store's
   * `countTokens`) total at most this, tool calls kept with their results (a positive integer).
   * Without `limit`, only the budget bounds the window.
   */
  maxTokens?: number;
}

/** The key of `Message.meta` under which LangChain's own fields are kept. */
export const LANGCHAIN_META_KEY = 'langchain';

const ROLES: Partial<Record<string, Role>> = { human: 'user', ai: 'assistant', system: 'system', tool: 'tool' };
/** The message fields that must survive a round trip: tool calls, their ids and results, metadata. */
const FIELDS = [
  'id',
  'name',
  'additional_kwargs',
  'response_metadata',
  'tool_calls',
  'invalid_tool_calls',
  'usage_metadata',
  'tool_call_id',
  'artifact',
  'status',
] as const;

/**
 * A LangChain chat message history over a {@link TieredStore}, for one user (and one of their threads).
 *
 * Messages are stored with their text as `content` (readable by any other code) and the rest
 * (tool calls, `tool_call_id`, ids, metadata, and a non-string `content` such as multimodal
 * blocks) in `meta.langchain`, so they come back as they went in. Those extras count against the
 * store's `limits.metaBytes` (64 KiB by default): larger ones (inline images) are refused with
 * `INVALID_META` and nothing is written.
 *
 * ```ts
 * const chain = new RunnableWithMessageHistory({
 *   runnable: prompt.pipe(model),
 *   getMessageHistory: (sessionId) => new TieredChatMessageHistory({ store, userId: sessionId }),
 *   inputMessagesKey: 'question',
 *   historyMessagesKey: 'history',
 * });
 * ```
 */
export class TieredChatMessageHistory extends BaseListChatMessageHistory {
  lc_namespace = ['langchain', 'stores', 'message', 'tiered_conversation_store'];
  /** The store every call goes to. */
  readonly store: TieredStore;
  /** The user this history is about. */
  readonly userId: UserId;
  /** The thread of the user's memory this history is ('main' unless the `thread` option names another). */
  readonly thread: string;
  readonly #limit: number | undefined;
  readonly #maxTokens: number | undefined;

  /** @throws ConfigurationError `INVALID_OPTION`, ValidationError `INVALID_USER_ID`, `INVALID_THREAD` */
  constructor(input: TieredChatMessageHistoryInput) {
    super();
    if (typeof (input?.store as Partial<TieredStore> | undefined)?.addMemory !== 'function') {
      throw new ConfigurationError(ErrorCode.INVALID_OPTION, 'TieredChatMessageHistory: pass { store, userId } with a TieredStore');
    }
    userKey(input.userId); // a bad id fails here, where the history is made, not on the first turn
    this.store = input.store;
    this.userId = input.userId;
    this.thread = checkThread(input.thread);
    this.#limit = input.limit === undefined ? undefined : checkLimit(input.limit, MAX_HISTORY_LIMIT);
    this.#maxTokens = input.maxTokens === undefined ? undefined : checkMaxTokens(input.maxTokens);
  }

  /**
   * The newest messages, oldest first. Tool results at the start of the window, whose calls fell
   * outside it, are left out: no model accepts a tool result without its call.
   * @throws ValidationError `INVALID_META` for a `tool` message stored without a `tool_call_id`
   */
  async getMessages(): Promise<BaseMessage[]> {
    const options: HistoryOptions = { thread: this.thread };
    if (this.#limit !== undefined) options.limit = this.#limit;
    if (this.#maxTokens !== undefined) options.maxTokens = this.#maxTokens;
    const history = await this.store.getHistory(this.userId, options);
    return dropLeadingToolResults(history).map(toLangChain);
  }

  /** Appends one message. @throws ValidationError `INVALID_ROLE` for types other than human, ai, system, tool; `INVALID_META` for fields JSON cannot hold */
  async addMessage(message: BaseMessage): Promise<void> {
    await this.addMessages([message]);
  }

  /**
   * Appends messages in order. Every message is converted and checked before the first is
   * written; only the store's size limits can stop a batch part way, keeping the messages before.
   */
  override async addMessages(messages: BaseMessage[]): Promise<void> {
    const stored = messages.map(fromLangChain);
    for (const { role, content, meta } of stored) {
      await this.store.addMemory(this.userId, role, content, meta === undefined ? { thread: this.thread } : { meta, thread: this.thread });
    }
  }

  /** Empties this history's thread of the user's memory (other threads, phone, booking and subscription stay). */
  override async clear(): Promise<void> {
    await this.store.clearHistory(this.userId, { thread: this.thread });
  }
}

/** A LangChain message as the arguments of `addMemory`. */
function fromLangChain(message: BaseMessage): { role: Role; content: string; meta?: JsonObject } {
  const role = ROLES[message.type];
  if (role === undefined) {
    throw new ValidationError(ErrorCode.INVALID_ROLE, `TieredChatMessageHistory stores human, ai, system and tool messages, got a ${message.type} message`);
  }
  const fields: Record<string, unknown> = {};
  for (const key of FIELDS) {
    const value = (message as unknown as Record<string, unknown>)[key];
    if (!isEmpty(value)) fields[key] = value;
  }
  if (typeof message.content !== 'string') fields.content = message.content;
  const text = typeof message.content === 'string' ? message.content : message.text;
  if (Object.keys(fields).length === 0) return { role, content: text };
  return { role, content: text, meta: checkMetaJson({ [LANGCHAIN_META_KEY]: fields }) };
}

/** A stored message as the LangChain message it was written from (or a plain one for others' writes). */
function toLangChain(message: Message): BaseMessage {
  const saved = message.meta?.[LANGCHAIN_META_KEY];
  const extra = saved !== null && typeof saved === 'object' && !Array.isArray(saved) ? saved : {};
  // The fields were read from a message of this class, so they fit its constructor.
  const fields = { ...extra, content: extra.content ?? message.content } as never;
  switch (message.role) {
    case 'user':
      return new HumanMessage(fields);
    case 'assistant':
      return new AIMessage(fields);
    case 'system':
      return new SystemMessage(fields);
    case 'tool':
      if (typeof extra.tool_call_id !== 'string') {
        throw new ValidationError(
          ErrorCode.INVALID_META,
          `message ${message.id} has role tool but no meta.${LANGCHAIN_META_KEY}.tool_call_id, so it cannot be a LangChain ToolMessage (store tool results through TieredChatMessageHistory)`,
        );
      }
      return new ToolMessage(fields);
  }
}

function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype && Object.keys(value).length === 0;
}
