import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FakeBotApi } from './helpers/fake-bot-api.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXIT_DEADLINE_MS = 30_000;

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Process groups this file started; killed whole after each test, whatever state a failure left them in. */
const groups = new Set<number>();
const fake = new FakeBotApi();

/** No token, no servers: what a newcomer has on a fresh clone. */
function newcomerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(BOT_TOKEN|TELEGRAM_|REDIS|DATABASE|PG|STORE_|npm_)/.test(name)) env[name] = value;
  }
  return { ...env, ...extra };
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Run {
  // Its own process group, so a failed test can kill the whole tree (npm, tsx and the bot under them).
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  if (child.pid) groups.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

/** The example's command from package.json, run as npm runs it but without npm, so a signal reaches it. */
function runScript(args: string[], env: NodeJS.ProcessEnv): Run {
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const [bin = '', ...rest] = (scripts.example ?? '').replace(/^exec\s+/, '').split(/\s+/);
  return run(join(ROOT, 'node_modules/.bin', bin), [...rest, ...args], { ...env, PATH: `${join(ROOT, 'node_modules/.bin')}:${env.PATH ?? ''}` });
}

async function exited(r: Run): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${EXIT_DEADLINE_MS} ms; stdout:\n${r.stdout()}\nstderr:\n${r.stderr()}`)), EXIT_DEADLINE_MS);
  });
  return Promise.race([r.exit, late]).finally(() => clearTimeout(timer));
}

/** Resolves once stdout contains `text`; fails at once if the process exits first. */
async function printed(r: Run, text: string): Promise<void> {
  if (r.stdout().includes(text)) return;
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (!r.stdout().includes(text)) return;
      r.child.stdout?.off('data', check);
      resolve();
    };
    r.child.stdout?.on('data', check);
    void r.exit.then(() => reject(new Error(`exited without printing ${JSON.stringify(text)}; stdout:\n${r.stdout()}\nstderr:\n${r.stderr()}`)));
  });
}

/** Each expected piece appears after the previous one. */
function expectInOrder(output: string, pieces: (string | RegExp)[]): void {
  let at = 0;
  for (const piece of pieces) {
    const rest = output.slice(at);
    const match =
      typeof piece === 'string'
        ? { index: rest.indexOf(piece), length: piece.length }
        : (() => {
            const m = piece.exec(rest);
            return { index: m ? m.index : -1, length: m?.[0].length ?? 0 };
          })();
    expect(match.index, `${String(piece)} after offset ${at} of:\n${output}`).toBeGreaterThanOrEqual(0);
    at += match.index + match.length;
  }
}

afterEach(() => {
  for (const group of groups) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // ESRCH: every process of the group has exited already.
    }
  }
  groups.clear();
});

afterAll(async () => {
  await fake.close();
});

describe('console mode: the same bot in the terminal, without a token', () => {
  it('npm run example with no token and no servers chats on stdin/stdout, in RAM, and exits 0 when stdin ends', async () => {
    const r = run('npm', ['run', 'example'], newcomerEnv());
    const lines = [
      '/start',
      'hello',
      'I like green tea',
      '/history',
      '/book',
      'haircut',
      'tomorrow',
      '2026-12-01',
      '/booking',
      '+7 999 123-45-67',
      '/phone',
      '/contact +7 (999) 123-45-67',
      '/subscribe',
      '/status',
      '/forget',
      '1',
      '/history',
    ];
    r.child.stdin?.end(`${lines.join('\n')}\n`);
    expect(await exited(r)).toEqual({ code: 0, signal: null });

    const out = r.stdout();
    const tiers = out.split('\n').filter((line) => /\btiers: /.test(line));
    expect(tiers).toHaveLength(1);
    expect(tiers[0]).toMatch(/memory/);
    expect(tiers[0]).not.toMatch(/redis|postgres/);
    expect(tiers[0]).toMatch(/tiers: memory \(only tier: data is lost on restart\)$/);
    expectInOrder(out, [
      /console mode \(no BOT_TOKEN set\)/,
      'BOT_TOKEN=',
      'tiers: ',
      'you: /start',
      'bot: Hi, friend!',
      '/contact +79991234567 to share a phone number',
      'you: hello',
      'bot: I have 1 message from our chat',
      'you: I like green tea',
      'bot: I have 3 messages from our chat. You said before: "hello"',
      'you: /history',
      /bot: Your last 4 messages, oldest first:\n\s+1\. You: hello\n\s+2\. Bot: .*\n\s+3\. You: I like green tea\n\s+4\. Bot: /,
      'bot: Which service',
      'bot: Noted: haircut. Which date?',
      'bot: I could not read "tomorrow" as a date',
      'bot: Booked: haircut on 2026-12-01',
      'bot: Your booking: haircut on 2026-12-01.',
      'bot: That looks like a phone number',
      '[ Share my phone number ]',
      'bot: Thanks! I saved your phone number as +79991234567.',
      'bot: Subscribed',
      /bot: Storage tiers:\n\s+redis: not configured\n\s+postgres: not configured\n\s+memory: up/,
      /\[1\] Yes, forget me\s+\[2\] Cancel/,
      '(notification: Erased)',
      'bot: Done: I have forgotten you.',
      'bot: No messages yet.',
      'Bye.',
    ]);
    expect(r.stderr()).not.toMatch(/Error|failed/);
  });

  it('streams an answer through a store draft: shown growing (sendMessageDraft), then sent finished', async () => {
    const r = run('npm', ['run', 'example'], newcomerEnv());
    r.child.stdin?.end('hello\n/history\n');
    expect(await exited(r)).toEqual({ code: 0, signal: null });
    const out = r.stdout();
    const final = 'I have 1 message from our chat: this one. Say something else and I will remind you of it; /history shows them all.';
    const growing = [...out.matchAll(/^bot \(typing\): (.*)$/gm)].map((m) => m[1] ?? '');
    expect(growing.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < growing.length; i++) {
      expect(growing[i]?.startsWith(growing[i - 1] ?? '')).toBe(true);
      expect((growing[i] ?? '').length).toBeGreaterThan((growing[i - 1] ?? '').length);
    }
    expect(growing.at(-1)).toBe(final);
    expectInOrder(out, ['you: hello', `bot (typing): ${growing[0]}\n`, `bot (typing): ${final}\n`, `bot: ${final}\n`, 'you: /history']);
    // Finished, not left streaming: the history holds it as a normal message.
    expect(out).toMatch(/bot: Your last 2 messages, oldest first:\n\s+1\. You: hello\n\s+2\. Bot: I have 1 message from our chat/);
    expect(r.stderr()).not.toMatch(/Error|failed/);
  });

  it('/new starts a conversation that later messages go to, and /threads lists them with titles and counts', async () => {
    const r = run('npm', ['run', 'example'], newcomerEnv());
    r.child.stdin?.end(`${['hello', '/new', 'fresh start', '/history', '/threads'].join('\n')}\n`);
    expect(await exited(r)).toEqual({ code: 0, signal: null });
    const out = r.stdout();
    const thread = /New conversation started \((t-\d+)\)/.exec(out)?.[1];
    expect(thread).toBeDefined();
    expectInOrder(out, [
      'you: hello',
      'bot: I have 1 message from our chat',
      'you: /new',
      `bot: New conversation started (${thread}).`,
      'you: fresh start',
      'bot: I have 1 message from our chat: this one.',
      /bot: Your last 2 messages, oldest first:\n\s+1\. You: fresh start\n\s+2\. Bot: /,
      'bot: Your conversations, most recent first:',
      new RegExp(`1\\. Started \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2} UTC \\(${thread}\\): 2 messages <- current`),
      '2. Main conversation (main): 2 messages\n',
      '/new starts another one.',
    ]);
    expect(r.stderr()).not.toMatch(/Error|failed/);
  });

  it('--console wins over BOT_TOKEN, never calls the Bot API, and exits 0 on SIGINT', async () => {
    await fake.start();
    const r = runScript(['--console'], newcomerEnv({ BOT_TOKEN: '123456:not-used', TELEGRAM_API_ROOT: fake.apiRoot }));
    r.child.stdin?.write('hello\n');
    await printed(r, 'bot: I have 1 message from our chat');
    r.child.kill('SIGINT');
    expect(await exited(r)).toEqual({ code: 0, signal: null });
    expect(r.stdout()).toMatch(/console mode \(--console\)/);
    expect(r.stdout()).toContain('Bye.');
    expect(fake.calls).toEqual([]);
  });

  it('answers input the store refuses with a helpful reply and keeps going', async () => {
    const r = run('npm', ['run', 'example', '--', '--console'], newcomerEnv());
    r.child.stdin?.end(`${'x'.repeat(1024 * 1024 + 1)}\n/contact 12345\nstill there?\n`);
    expect(await exited(r)).toEqual({ code: 0, signal: null });
    expectInOrder(r.stdout(), [
      'bot: That message is too long for me to keep',
      'bot: That is not a phone number I can save',
      'you: still there?',
      'bot: I have 1 message from our chat',
    ]);
    // Answered well: the user's bad input is not a failure of the bot, so nothing on stderr mid-chat.
    expect(r.stderr()).not.toMatch(/failed|CONTENT_TOO_LARGE|INVALID_PHONE/);
  });

  it('with BOT_TOKEN and no way to reach the Bot API, says within 10 s what it tries and why it fails, token masked', async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const started = Date.now();
    const r = runScript([], newcomerEnv({ BOT_TOKEN: '123456:SECRET-token-value', TELEGRAM_API_ROOT: `http://127.0.0.1:${closed}` }));
    expect(await exited(r)).toEqual({ code: 1, signal: null });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.stdout()).toContain(`Connecting to the Telegram Bot API at http://127.0.0.1:${closed}`);
    expect(r.stderr()).toMatch(/Cannot reach the Telegram Bot API at .*ECONNREFUSED/);
    expect(r.stderr()).toContain('--console');
    expect(`${r.stdout()}${r.stderr()}`).not.toContain('SECRET-token-value');
  });
});

describe('console mode: /summary', () => {
  it("shows the thread's summary from the stand-in summariser", async () => {
    const r = run('npm', ['run', 'example'], newcomerEnv());
    r.child.stdin?.end(`${['hello there bot', 'I like green tea', '/summary'].join('\n')}\n`);
    expect(await exited(r)).toEqual({ code: 0, signal: null });
    expectInOrder(r.stdout(), ['you: /summary', /bot: Summary of this conversation so far:\n\s*You: hello there bot\n\s*Bot: .*\n\s*You: I like green tea/]);
  });
});
