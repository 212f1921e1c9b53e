import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the bot made, with what the fake answered (`undefined` while a long poll waits). */
export interface ApiCall {
  token: string;
  method: string;
  payload: Record<string, unknown>;
  result: unknown;
}

/** A `sendMessage` call, with the fields tests look at. */
export interface SentMessage extends ApiCall {
  chatId: number | string;
  text: string;
  messageId: number;
  replyMarkup: Record<string, unknown> | undefined;
}

type Update = { update_id: number } & Record<string, unknown>;
type Message = { message_id: number } & Record<string, unknown>;

interface Poll {
  offset: number;
  limit: number;
  answer: (updates: Update[]) => void;
}

interface Waiter {
  from: number;
  predicate: (call: ApiCall) => boolean;
  resolve: (call: ApiCall) => void;
  reject: (error: Error) => void;
}

/** An update with no user or chat (a poll's state): plugins must cope without a user id. */
export const ANONYMOUS_POLL = {
  id: 'p',
  question: 'q?',
  options: [],
  total_voter_count: 0,
  is_closed: false,
  is_anonymous: true,
  type: 'regular',
  allows_multiple_answers: false,
} as const;

export const FAKE_BOT_INFO = {
  id: 424242,
  is_bot: true,
  first_name: 'Fake bot',
  username: 'fake_example_bot',
  can_join_groups: true,
  can_read_all_group_messages: false,
  supports_inline_queries: false,
  can_connect_to_business: false,
  has_main_web_app: false,
  has_topics_enabled: false,
  allows_users_to_create_topics: false,
  can_manage_bots: false,
  supports_join_request_queries: false,
} as const;

/**
 * A stand-in Telegram Bot API on 127.0.0.1: `/bot<token>/<method>` over real HTTP, long polling
 * with `offset`/`timeout` as Telegram does it. Every call is recorded; unknown methods answer `true`.
 */
export class FakeBotApi {
  readonly calls: ApiCall[] = [];
  readonly #server = createServer((req, res) => {
    this.#handle(req, res).catch((error: unknown) => reply(res, 500, { ok: false, error_code: 500, description: `Internal Server Error: ${String(error)}` }));
  });
  readonly #polls = new Set<Poll>();
  readonly #waiters = new Set<Waiter>();
  readonly #sent = new Map<number, Message>();
  #queue: Update[] = [];
  #updateId = 0;
  #messageId = 0;
  #lastUserMessageId = 0;
  /** Calls from here on answer the last push. */
  #mark = 0;

  /** @param token When set, other tokens get 401 Unauthorized, as from Telegram. */
  constructor(private readonly token?: string) {}

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
  }

  /** For grammY's `client.apiRoot`. */
  get apiRoot(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** A text from the user in their private chat; `threadId` puts it in a private-chat topic. Returns the update id. */
  pushText(userId: number, text: string, options: { threadId?: number } = {}): number {
    const command = /^\/\w+(@\w+)?/.exec(text);
    const topic = options.threadId === undefined ? {} : { message_thread_id: options.threadId, is_topic_message: true };
    return this.#pushMessage(
      userId,
      command ? { text, entities: [{ type: 'bot_command', offset: 0, length: command[0].length }], ...topic } : { text, ...topic },
    );
  }

  /** The message id the last pushed user message got (for `pushEdit`). */
  get lastUserMessageId(): number {
    return this.#lastUserMessageId;
  }

  /** An `edited_message`: the user changed the text of their message `messageId`. */
  pushEdit(userId: number, messageId: number, text: string): number {
    return this.#push({
      edited_message: { message_id: messageId, date: now() - 1, edit_date: now(), chat: chat(userId), from: user(userId), text },
    });
  }

  /** A contact shared with the request_contact button: the user's own. */
  pushContact(userId: number, phone: string): number {
    return this.#pushMessage(userId, { contact: { phone_number: phone, first_name: `User${userId}`, user_id: userId } });
  }

  /** A press on an inline button of the message the bot sent as `messageId`. */
  pushCallback(userId: number, data: string, messageId: number): number {
    const message = this.#sent.get(messageId) ?? { message_id: messageId, date: now(), chat: chat(userId) };
    return this.#push({ callback_query: { id: `cb${this.#updateId + 1}`, from: user(userId), chat_instance: `ci${userId}`, data, message } });
  }

  /** Any other update, as given (`update_id` is added). */
  pushUpdate(content: Record<string, unknown>): number {
    return this.#push(content);
  }

  /** The first sendMessage since the last push that matches; rejects after `timeoutMs` listing what was sent. */
  async waitForMessage(predicate: (message: SentMessage) => boolean, timeoutMs = 10_000): Promise<SentMessage> {
    const call = await this.waitForCall(
      (c) => c.method === 'sendMessage' && c.result !== undefined && predicate(sent(c)),
      timeoutMs,
      () => {
        const texts = this.calls
          .slice(this.#mark)
          .filter((c) => c.method === 'sendMessage')
          .map((c) => JSON.stringify(c.payload.text));
        return `no matching sendMessage within ${timeoutMs} ms; sent since the last push: ${texts.join(', ') || 'nothing'}`;
      },
    );
    return sent(call);
  }

  /** The first call since the last push (or since start) that matches. */
  waitForCall(predicate: (call: ApiCall) => boolean, timeoutMs = 10_000, explain?: () => string): Promise<ApiCall> {
    const found = this.calls.slice(this.#mark).find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      const waiter: Waiter = {
        from: this.#mark,
        predicate,
        resolve: (call) => {
          settle();
          resolve(call);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      const timer = setTimeout(() => waiter.reject(new Error(explain?.() ?? `no matching Bot API call within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    for (const waiter of this.#waiters) waiter.reject(new Error('the fake Bot API was closed'));
    for (const poll of this.#polls) poll.answer([]);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #pushMessage(userId: number, content: Record<string, unknown>): number {
    this.#lastUserMessageId = ++this.#messageId;
    return this.#push({ message: { message_id: this.#lastUserMessageId, date: now(), chat: chat(userId), from: user(userId), ...content } });
  }

  #push(content: Record<string, unknown>): number {
    const update = { update_id: ++this.#updateId, ...content };
    this.#queue.push(update);
    this.#mark = this.calls.length;
    for (const poll of this.#polls) {
      const ready = this.#available(poll.offset, poll.limit);
      if (ready.length > 0) poll.answer(ready);
    }
    return update.update_id;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = /^\/bot([^/]+)\/(\w+)$/.exec(url.pathname);
    if (!route) return reply(res, 404, { ok: false, error_code: 404, description: 'Not Found' });
    const [, token = '', method = ''] = route;
    let payload: Record<string, unknown>;
    try {
      payload = { ...Object.fromEntries(url.searchParams), ...parseBody(req.headers['content-type'], await readBody(req)) };
    } catch (error) {
      return reply(res, 400, { ok: false, error_code: 400, description: `Bad Request: ${(error as Error).message}` });
    }
    if (this.token !== undefined && token !== this.token) return reply(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
    const call: ApiCall = { token, method, payload, result: undefined };
    if (method === 'getUpdates') {
      this.#record(call);
      return this.#getUpdates(call, res);
    }
    const error = check(method, payload);
    if (!error) call.result = this.#answer(method, payload);
    this.#record(call);
    if (error) return reply(res, 400, { ok: false, error_code: 400, description: `Bad Request: ${error}` });
    reply(res, 200, { ok: true, result: call.result });
  }

  #record(call: ApiCall): void {
    this.calls.push(call);
    const index = this.calls.length - 1;
    for (const waiter of this.#waiters) if (index >= waiter.from && waiter.predicate(call)) waiter.resolve(call);
  }

  #answer(method: string, p: Record<string, unknown>): unknown {
    switch (method) {
      case 'getMe':
        return FAKE_BOT_INFO;
      case 'sendMessage': {
        const message: Message = { message_id: ++this.#messageId, date: now(), chat: chat(p.chat_id), from: botUser(), text: p.text };
        if (p.reply_markup && typeof p.reply_markup === 'object' && 'inline_keyboard' in p.reply_markup) message.reply_markup = p.reply_markup;
        this.#sent.set(message.message_id, message);
        return message;
      }
      case 'editMessageText':
      case 'editMessageReplyMarkup': {
        const message = this.#sent.get(Number(p.message_id));
        if (!message) return true;
        if (method === 'editMessageText') message.text = p.text;
        if (p.reply_markup) message.reply_markup = p.reply_markup;
        else delete message.reply_markup;
        return message;
      }
      default:
        return true;
    }
  }

  /** Confirms updates before `offset`, answers at once when some are queued, else holds up to `timeout` s. */
  #getUpdates(call: ApiCall, res: ServerResponse): void {
    const offset = Number(call.payload.offset ?? 0);
    const limit = Math.min(Math.max(Number(call.payload.limit ?? 100), 1), 100);
    const timeout = Number(call.payload.timeout ?? 0);
    if (offset < 0) this.#queue = this.#queue.slice(offset);
    const ready = this.#available(offset, limit);
    if (ready.length > 0 || !(timeout > 0)) {
      call.result = ready;
      reply(res, 200, { ok: true, result: ready });
      return;
    }
    const poll: Poll = {
      offset,
      limit,
      answer: (updates) => {
        done();
        call.result = updates;
        reply(res, 200, { ok: true, result: updates });
      },
    };
    const timer = setTimeout(() => poll.answer([]), timeout * 1000);
    const done = () => {
      clearTimeout(timer);
      this.#polls.delete(poll);
    };
    res.on('close', done);
    this.#polls.add(poll);
  }

  #available(offset: number, limit: number): Update[] {
    if (offset > 0) this.#queue = this.#queue.filter((u) => u.update_id >= offset);
    return this.#queue.slice(0, limit);
  }
}

/** The errors Telegram gives for the mistakes a bot could make here. */
function check(method: string, p: Record<string, unknown>): string | undefined {
  if (method === 'sendMessage') {
    if (p.chat_id === undefined) return 'chat_id is empty';
    if (typeof p.text !== 'string' || p.text.trim() === '') return 'message text is empty';
    if (p.text.length > 4096) return 'message is too long';
  }
  if (method === 'answerCallbackQuery' && !p.callback_query_id) return 'query_id is empty';
  return undefined;
}

function sent(call: ApiCall): SentMessage {
  const p = call.payload;
  const markup = p.reply_markup as Record<string, unknown> | undefined;
  return { ...call, chatId: p.chat_id as number | string, text: String(p.text), messageId: (call.result as Message).message_id, replyMarkup: markup };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** grammY sends JSON; form-encoded bodies (curl, other libraries) carry JSON in their fields. */
function parseBody(type: string | undefined, body: string): Record<string, unknown> {
  if (!body) return {};
  if (type?.includes('application/x-www-form-urlencoded')) {
    const fields = Object.fromEntries(new URLSearchParams(body));
    return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, /^[[{]/.test(v) ? JSON.parse(v) : v]));
  }
  const parsed = JSON.parse(body) as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function user(id: number): Record<string, unknown> {
  return { id, is_bot: false, first_name: `User${id}`, language_code: 'en' };
}

function chat(id: unknown): Record<string, unknown> {
  return { id: Number(id), type: 'private', first_name: `User${String(id)}` };
}

function botUser(): Record<string, unknown> {
  return { id: FAKE_BOT_INFO.id, is_bot: true, first_name: FAKE_BOT_INFO.first_name, username: FAKE_BOT_INFO.username };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}
