// The example bot: `npm run example`. With BOT_TOKEN it runs on Telegram (long polling); without it,
// or with --console, the same bot chats in this terminal. The store comes from the environment:
// REDIS_URL / DATABASE_URL (or Railway's variables); memory only when none is set.
// Optional: TELEGRAM_API_ROOT (another Bot API server), STORE_KEY_PREFIX (Redis key prefix),
// STORE_SCHEMA (PostgreSQL schema).
import { GrammyError } from 'grammy';
import { TieredStore, isStoreError, type FromEnvOptions } from '../../src/index.js';
import { CONSOLE_BOT, ConsoleChat, runConsole } from './console.js';
import { COMMANDS, createBot, standInSummarize } from './handlers.js';

const env = process.env;
const token = env.BOT_TOKEN?.trim();
const consoleMode = !token || process.argv.includes('--console');
const stopping = new AbortController();
const CONNECT_TIMEOUT_MS = 6_000;

if (consoleMode) {
  console.log(
    [
      `tiered-conversation-store example bot, console mode (${token ? '--console' : 'no BOT_TOKEN set'}): chat with the bot right here.`,
      'Type a message and press Enter; try /start first. Ctrl+D or Ctrl+C quits.',
      'To run it on Telegram: BOT_TOKEN=<token from @BotFather> npm run example',
      '',
    ].join('\n'),
  );
}

let store: TieredStore;
try {
  store = TieredStore.fromEnv(env, storeOptions());
} catch (error) {
  console.error(`Cannot configure the store: ${isStoreError(error) ? `${error.message} (${error.code})` : String(error)}`);
  process.exit(1);
}
if (consoleMode && store.health().redis === 'absent' && store.health().postgres === 'absent') {
  console.log('Set REDIS_URL and/or DATABASE_URL to keep the conversation across restarts.\n');
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping.signal.aborted) return;
    console.log(`${signal}: stopping the bot and closing the store...`);
    stopping.abort();
    // Closing has its own deadlines; this one only guards against something unforeseen.
    setTimeout(() => {
      console.error('Shutdown took more than 15 s: exiting anyway.');
      process.exit(1);
    }, 15_000).unref();
  });
}

let code = 0;
if (consoleMode) {
  const chat = new ConsoleChat((text) => process.stdout.write(text));
  const bot = createBot('console', store, { botInfo: CONSOLE_BOT, console: true });
  bot.api.config.use(chat.transformer);
  await runConsole(bot, chat, stopping.signal);
} else {
  code = await poll(token as string);
}
await store.close();
console.log('Bye.');
process.exit(code);

/** Long polling until a signal arrives; the exit code. */
async function poll(botToken: string): Promise<number> {
  const apiRoot = env.TELEGRAM_API_ROOT?.trim().replace(/\/+$/, '');
  const bot = createBot(botToken, store, apiRoot ? { apiRoot } : {});
  // Say what we are doing before the first network call: without network it would otherwise be silent.
  const target = apiRoot ?? 'https://api.telegram.org';
  console.log(`Connecting to the Telegram Bot API at ${target} (getMe with BOT_TOKEN ${maskToken(botToken)})...`);
  const connected = await connect(bot, target, botToken);
  if (connected !== undefined) return connected;
  const running = bot.start({
    onStart: (me) => {
      console.log(`@${me.username} is running (long polling${apiRoot ? ` on ${apiRoot}` : ''}). Ctrl+C stops it.`);
      bot.api.setMyCommands(COMMANDS).catch((error: unknown) => console.warn(`Could not set the command menu: ${String(error)}`));
    },
  });
  running.catch(() => undefined); // handled below; this only keeps a late rejection from crashing the exit
  const stopped = new Promise<void>((resolve) => stopping.signal.addEventListener('abort', () => resolve(), { once: true }));
  try {
    await Promise.race([running, stopped]);
  } catch (error) {
    const rejected = error instanceof GrammyError && error.error_code === 401;
    console.error(
      rejected
        ? 'Telegram rejected BOT_TOKEN (401 Unauthorized): copy it again from @BotFather, or unset it to try the console mode.'
        : `The bot stopped: ${String(error)}`,
    );
    return 1;
  }
  // bot.stop() confirms the updates handled so far; then the update in progress finishes.
  await within(5000, bot.stop()).catch((error: unknown) => console.warn(`Could not confirm the last updates: ${String(error)}`));
  await within(5000, running).catch(() => undefined);
  return 0;
}

/** getMe with a deadline; undefined when connected, else the exit code after saying why it failed. */
async function connect(bot: ReturnType<typeof createBot>, target: string, botToken: string): Promise<number | undefined> {
  const deadline = AbortSignal.timeout(CONNECT_TIMEOUT_MS);
  try {
    // One getMe, not bot.init(): that one retries network errors quietly, for as long as they last.
    // grammY types its signal as the abort-controller polyfill's; the platform one is what it uses at run time.
    bot.botInfo = await bot.api.getMe(AbortSignal.any([deadline, stopping.signal]) as Parameters<typeof bot.api.getMe>[0]);
    return undefined;
  } catch (error) {
    if (stopping.signal.aborted) return 0;
    const why = deadline.aborted
      ? `no answer within ${CONNECT_TIMEOUT_MS / 1000} s (is this machine offline, or is ${new URL(target).host} blocked?)`
      : error instanceof GrammyError && error.error_code === 401
        ? 'Telegram rejected BOT_TOKEN (401 Unauthorized): copy it again from @BotFather, or unset it to try the console mode'
        : rootCause(error);
    console.error(`Cannot reach the Telegram Bot API at ${target}: ${why.split(botToken).join(maskToken(botToken))}`);
    console.error('Without network access, run the bot in this terminal instead: npm run example -- --console');
    return 1;
  }
}

/** The innermost cause of a failed request (grammY wraps fetch errors, which wrap the socket error). */
function rootCause(error: unknown): string {
  const messages: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current && depth < 6; depth++) {
    if (current instanceof Error) {
      const code = (current as NodeJS.ErrnoException).code;
      messages.push(code && !current.message.includes(code) ? `${code}: ${current.message}` : current.message);
      current = (current as { error?: unknown }).error ?? current.cause;
    } else {
      messages.push(String(current));
      break;
    }
  }
  return messages.at(-1) ?? 'unknown error';
}

function maskToken(botToken: string): string {
  const colon = botToken.indexOf(':');
  return colon > 0 ? `${botToken.slice(0, colon)}:***` : '***';
}

function storeOptions(): FromEnvOptions {
  // Rolling summaries (/summary): the stand-in summariser, small threshold so a short chat shows one.
  const options: FromEnvOptions = { summarize: standInSummarize, summarizeAfterTokens: 300 };
  const keyPrefix = env.STORE_KEY_PREFIX?.trim();
  const schema = env.STORE_SCHEMA?.trim();
  if (keyPrefix) options.redis = { keyPrefix };
  if (schema) options.postgres = { schema };
  return options;
}

function within<T>(ms: number, work: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
