import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, TieredStore } from '../src/index.js';
import { FakeBotApi, type SentMessage } from './helpers/fake-bot-api.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = '123456:e2e-test-token';
const USER = 731_000_001;
/** grammY long-polls for 30 s: a bot that did not cut its poll short would miss this deadline. */
const EXIT_DEADLINE_MS = 15_000;
const REPLY_DEADLINE_MS = 30_000;

interface BotProcess {
  child: ChildProcess;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const iso = isolation('example bot e2e');
const fake = new FakeBotApi(TOKEN);
/** Process groups this file started; killed whole at the end, whatever state a failed test left them in. */
const groups = new Set<number>();

/**
 * The command of `npm run example`, run the way npm runs it (node_modules/.bin on the PATH) but
 * without npm and its shell in between: a SIGTERM sent to npm stops at that shell, so a test of
 * the bot's own shutdown has to signal the bot's command directly.
 */
function startBot(): BotProcess {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const [bin = '', ...args] = (scripts.example ?? '').replace(/^exec\s+/, '').split(/\s+/);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!/^(BOT_TOKEN|REDIS|DATABASE|PG|STORE_)/.test(name)) env[name] = value;
  Object.assign(env, {
    BOT_TOKEN: TOKEN,
    TELEGRAM_API_ROOT: fake.apiRoot,
    REDIS_URL: redisUrl(),
    DATABASE_URL: databaseUrl(),
    STORE_KEY_PREFIX: iso.keyPrefix,
    STORE_SCHEMA: iso.schema,
    PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH ?? ''}`,
  });
  // Its own process group, so a failed test can kill the whole tree (tsx and the bot under it).
  const child = spawn(join(ROOT, 'node_modules/.bin', bin), args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (child.pid) groups.add(child.pid);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exit };
}

/** The bot's next message to the user, failing at once with the bot's output if the bot exits. */
async function nextMessage(bot: BotProcess): Promise<SentMessage> {
  const exited = bot.exit.then(({ code, signal }) => {
    throw new Error(`the bot exited (code ${code}, signal ${signal}) before replying; its output:\n${bot.output()}`);
  });
  return Promise.race([fake.waitForMessage((m) => m.chatId === USER, REPLY_DEADLINE_MS), exited]);
}

async function say(bot: BotProcess, text: string): Promise<SentMessage> {
  fake.pushText(USER, text);
  return nextMessage(bot);
}

async function stop(bot: BotProcess, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  bot.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running ${EXIT_DEADLINE_MS} ms after ${signal}; output:\n${bot.output()}`)), EXIT_DEADLINE_MS);
  });
  return Promise.race([bot.exit, late]).finally(() => clearTimeout(timer));
}

function lastUpdateId(): number {
  return Math.max(
    ...fake.calls.flatMap((c) => (c.method === 'getUpdates' && Array.isArray(c.result) ? c.result.map((u: { update_id: number }) => u.update_id) : [])),
  );
}

function killGroup(group: number): void {
  try {
    process.kill(-group, 'SIGKILL');
  } catch {
    // ESRCH: every process of the group has exited already.
  }
}

beforeAll(async () => {
  await fake.start();
});

afterAll(async () => {
  for (const group of groups) killGroup(group);
  await fake.close();
  await cleanupRedis(redisUrl(), iso.keyPrefix);
  await cleanupPostgres(databaseUrl(), iso.schema);
});

describe('the example bot as a child process, against a stand-in Bot API, with real Redis and PostgreSQL', () => {
  let first: BotProcess;

  it('holds the whole conversation: chat, history, phone, booking, subscription, status', async () => {
    first = startBot();
    expect((await say(first, '/start')).text).toMatch(/Hi, User\d+!.*\/history.*\/phone.*\/book.*\/forget.*\/status/s);

    expect((await say(first, 'hello there')).text).toContain('I have 1 message from our chat');
    expect((await say(first, 'I like green tea')).text).toBe('I have 3 messages from our chat. You said before: "hello there"');

    const typed = await say(first, '+7 999 123-45-67');
    expect(typed.text).toMatch(/looks like a phone number.*Share my phone number/);
    expect(typed.replyMarkup).toMatchObject({ keyboard: [[{ request_contact: true }]] });
    const ask = await say(first, '/phone');
    expect(ask.replyMarkup).toMatchObject({ keyboard: [[{ text: 'Share my phone number', request_contact: true }]] });
    fake.pushContact(USER, '79991234567');
    const saved = await nextMessage(first);
    expect(saved.text).toContain('+79991234567');
    expect(saved.replyMarkup).toMatchObject({ remove_keyboard: true });

    expect((await say(first, '/book')).text).toContain('Which service');
    expect((await say(first, 'haircut')).text).toMatch(/Which date\?.*YYYY-MM-DD/);
    expect((await say(first, 'next Friday')).text).toMatch(/could not read "next Friday" as a date.*YYYY-MM-DD/);
    expect((await say(first, '2026-02-30')).text).toContain('2026-02-30 is not a date on the calendar');
    expect((await say(first, '2026-12-01')).text).toContain('Booked: haircut on 2026-12-01');
    expect((await say(first, '/booking')).text).toBe('Your booking: haircut on 2026-12-01.');
    // A stand-in that leaves out the bot_command entity Telegram always sends still gets an answer.
    fake.pushUpdate({
      message: { message_id: 9999, date: 0, chat: { id: USER, type: 'private' }, from: { id: USER, is_bot: false, first_name: 'U' }, text: '/booking' },
    });
    expect((await nextMessage(first)).text).toBe('Your booking: haircut on 2026-12-01.');

    expect((await say(first, '/subscribe')).text).toMatch(/^Subscribed/);
    expect((await say(first, '/status')).text).toMatch(/redis: up\npostgres: up\nmemory: up\nwrites waiting for PostgreSQL: \d+/);

    const history = (await say(first, '/history')).text;
    expect(history).toMatch(/1\. You: hello there\n2\. Bot: I have 1 message.*\n3\. You: I like green tea\n4\. Bot: I have 3 messages/);
    expect(history).not.toContain('999');
  });

  it('stops on SIGTERM: confirms the handled updates to the Bot API and exits 0', async () => {
    const before = fake.calls.length;
    expect(await stop(first, 'SIGTERM')).toEqual({ code: 0, signal: null });
    // bot.stop(): a last getUpdates that does not wait, with the offset that confirms every handled update.
    const confirmations = fake.calls.slice(before).filter((c) => c.method === 'getUpdates' && !c.payload.timeout);
    expect(confirmations.map((c) => c.payload.offset)).toEqual([lastUpdateId() + 1]);
    expect(first.output()).toContain('Bye.');
  });

  it('has written everything to PostgreSQL by the time it exits', async () => {
    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    try {
      const history = await durable.getHistory(USER);
      expect(history.filter((m) => m.role === 'user').map((m) => m.content)).toEqual(['hello there', 'I like green tea']);
      expect(await durable.getUserPhone(USER)).toBe('+79991234567');
      expect(await durable.getBookingData(USER)).toEqual({ service: 'haircut', date: '2026-12-01' });
      expect(await durable.isEmailSubscriber(USER)).toBe(true);
    } finally {
      await durable.close();
    }
  });

  it('remembers the conversation after a restart, and /forget erases it after the confirmation button', async () => {
    const second = startBot();
    const history = (await say(second, '/history')).text;
    expect(history).toContain('You: hello there');
    expect(history).toContain('You: I like green tea');
    expect((await say(second, 'and now?')).text).toBe('I have 5 messages from our chat. You said before: "I like green tea"');
    expect((await say(second, '/booking')).text).toBe('Your booking: haircut on 2026-12-01.');

    const confirm = await say(second, '/forget');
    expect(confirm.replyMarkup).toMatchObject({ inline_keyboard: [[{ callback_data: 'forget:yes' }, { callback_data: 'forget:no' }]] });
    fake.pushCallback(USER, 'forget:yes', confirm.messageId);
    expect((await nextMessage(second)).text).toMatch(/forgotten you/);
    expect(fake.calls.some((c) => c.method === 'answerCallbackQuery' && c.payload.text === 'Erased')).toBe(true);
    expect((await say(second, '/history')).text).toMatch(/^No messages yet/);
    expect((await say(second, '/booking')).text).toMatch(/^You have no booking/);

    expect(await stop(second, 'SIGINT')).toEqual({ code: 0, signal: null });
  });

  it('/new moves the chat to a new thread, /threads lists both, and an edited message updates its stored copy', async () => {
    const third = startBot();
    expect((await say(third, 'back in main')).text).toContain('I have 1 message from our chat');
    const started = (await say(third, '/new')).text;
    const thread = /New conversation started \((t-\d+)\)/.exec(started)?.[1];
    expect(thread, started).toBeDefined();
    expect((await say(third, 'a fresh topic')).text).toContain('I have 1 message from our chat: this one.');
    const edited = fake.lastUserMessageId;
    expect((await say(third, 'more on it')).text).toBe('I have 3 messages from our chat. You said before: "a fresh topic"');

    fake.pushEdit(USER, edited, 'a fresh topic, edited');
    expect((await say(third, '/history')).text).toMatch(/1\. You: a fresh topic, edited\n2\. Bot: .*\n3\. You: more on it\n4\. Bot: /);

    const threads = (await say(third, '/threads')).text;
    expect(threads).toMatch(new RegExp(`1\\. Started .* UTC \\(${thread}\\): 4 messages <- current\\n2\\. Main conversation \\(main\\): 2 messages`));
    expect(await stop(third, 'SIGTERM')).toEqual({ code: 0, signal: null });

    const durable = new TieredStore({ postgres: new PostgresAdapter({ url: databaseUrl(), schema: iso.schema }), logger: false });
    try {
      const stored = await durable.getHistory(USER, { thread: thread as string });
      expect(stored.map((m) => `${m.role}:${m.content}`).slice(0, 1)).toEqual(['user:a fresh topic, edited']);
      expect(stored.every((m) => m.status === undefined)).toBe(true);
    } finally {
      await durable.close();
    }
  });
});
