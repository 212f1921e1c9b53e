// A bot process for the version-2 crash tests, meant to be SIGKILLed. Each user runs a sequential
// loop of random conversation ops (several users at once), so at most one op per user is in
// flight when the process dies. One line per event; an ACK only after the op's await resolved:
//   START <user> <json>   an op is about to run: { n, op, ... } (n counts the user's ops)
//   ACK <user> <json>     it resolved: the same description plus its result (ids of adds and drafts)
//   UPD <user> <json>     a draft's update(text) was called: { id, text }
//   FAIL <user> <json>    it threw: { n, op, code, error, nothingWritten }; unless nothingWritten,
//                         the user's loop stops there (the op may or may not have landed)
//   LOG <level> <message> what the store logged
//   READY <json>          (draft mode) the abandoned draft's id, user, thread and last flushed text
// The configuration comes as JSON in CRASH_CONFIG (ConversationCrashConfig in conversation-crash.ts).
import { PostgresAdapter, RedisAdapter, TieredStore, type Message } from '../../src/index.js';
import type { ConversationCrashConfig, OpDesc } from './conversation-crash.js';
import { oneLine, out, workerLogger } from './worker.js';

const config = JSON.parse(process.env.CRASH_CONFIG ?? '{}') as ConversationCrashConfig;
const logger = workerLogger;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const store = new TieredStore({
  logger,
  writeMode: config.writeMode,
  probeIntervalMs: 100,
  journalLimit: 1_000_000,
  draftFlushMs: config.draftFlushMs ?? 20,
  ...(config.encryptionKeyHex ? { encryption: { keys: { k1: Buffer.from(config.encryptionKeyHex, 'hex') }, current: 'k1' } } : {}),
  redis: new RedisAdapter({ url: config.redisUrl, keyPrefix: config.keyPrefix, timeoutMs: config.redisTimeoutMs ?? 500 }),
  postgres: new PostgresAdapter({
    url: config.databaseUrl,
    schema: config.schema,
    timeoutMs: config.pgTimeoutMs ?? 1000,
    connectTimeoutMs: config.pgTimeoutMs ?? 1000,
    max: 4,
  }),
});

const THREADS = ['main', 't1', 't2'] as const;
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
const threadOption = (thread: string) => (thread === 'main' && Math.random() < 0.5 ? {} : { thread });

/** What one user's loop believes is stored (only to pick targets; the parent checks against its own model). */
class Known {
  readonly live = new Map<string, string>(); // id -> thread
  readonly ever: string[] = [];
  add(id: string, thread: string): void {
    this.live.set(id, thread);
    this.ever.push(id);
  }
  /** Mostly a message that is there; sometimes one that was removed (the op must then change nothing). */
  target(): string | undefined {
    const live = [...this.live.keys()];
    if (live.length > 0 && Math.random() < 0.85) return pick(live);
    return this.ever.length > 0 ? pick(this.ever) : undefined;
  }
  removeThread(thread: string, above = ''): void {
    for (const [id, t] of this.live) if (t === thread && id > above) this.live.delete(id);
  }
}

/** Runs one op: START before, ACK with the result after, FAIL on error. Returns false when the loop must stop. */
async function run<T extends object>(user: string, desc: OpDesc, work: () => Promise<T>): Promise<T | undefined> {
  out(`START ${user} ${JSON.stringify(desc)}`);
  try {
    const result = await work();
    out(`ACK ${user} ${JSON.stringify({ ...desc, ...result })}`);
    return result;
  } catch (error) {
    const e = error as Error & { code?: string };
    // The lookup by id before an edit, delete or truncate failed: nothing was written.
    const nothingWritten = /cannot tell whether message/.test(e.message);
    out(`FAIL ${user} ${JSON.stringify({ ...desc, code: e.code ?? '', error: oneLine(e.message), nothingWritten })}`);
    if (!nothingWritten) throw new StopUser();
    return undefined;
  }
}

class StopUser extends Error {}

function summary(m: Message | null): { found: boolean; thread?: string; content?: string; status?: string } {
  if (!m) return { found: false };
  return { found: true, thread: m.thread, content: m.content, ...(m.status ? { status: m.status } : {}) };
}

async function userLoop(user: string): Promise<void> {
  const known = new Known();
  for (let n = 0; ; n++) {
    const r = Math.random();
    const content = `${config.tag}:${user}:${n}`;
    if (r < 0.34 || known.ever.length === 0) {
      const thread = pick(THREADS);
      const added = await run(user, { n, op: 'add', thread, content }, async () => {
        const m = await store.addMemory(user, 'user', content, threadOption(thread));
        return { id: m.id };
      });
      if (added) known.add(added.id, thread);
    } else if (r < 0.48) {
      const target = known.target() as string;
      await run(user, { n, op: 'edit', target, content }, async () => summary(await store.updateMessage(user, target, { content })));
    } else if (r < 0.55) {
      const target = known.target() as string;
      const done = await run(user, { n, op: 'delete', target }, async () => ({ existed: await store.deleteMessage(user, target) }));
      if (done) known.live.delete(target);
    } else if (r < 0.575) {
      const target = known.target() as string;
      const done = await run(user, { n, op: 'truncate', target }, async () => ({ removed: await store.truncateAfter(user, target) }));
      const thread = known.live.get(target);
      if (done && thread !== undefined) known.removeThread(thread, target);
    } else if (r < 0.675) {
      const thread = pick(THREADS);
      const title = Math.random() < 0.2 ? null : `${config.tag}:${user}:${n}:title`;
      await run(user, { n, op: 'title', thread, title }, async () => {
        await store.setThreadTitle(user, thread, title);
        return {};
      });
    } else if (r < 0.69) {
      const thread = pick(THREADS);
      const done = await run(user, { n, op: 'clear', thread }, async () => {
        await store.clearHistory(user, threadOption(thread));
        return {};
      });
      if (done) known.removeThread(thread);
    } else if (r < 0.7) {
      const thread = pick(THREADS);
      const done = await run(user, { n, op: 'dropThread', thread }, async () => {
        await store.deleteThread(user, thread);
        return {};
      });
      if (done) known.removeThread(thread);
    } else if (r < 0.85) {
      await draft(user, n, known);
    } else if (r < 0.93) {
      // Reads fill and then use Redis's copy of the thread, so the writes that follow must keep that copy right.
      const thread = pick(THREADS);
      await run(user, { n, op: 'read', thread }, async () => ({
        got: (await store.getHistory(user, { ...threadOption(thread), limit: 20 })).map((m) => [m.id, m.content, m.status ?? null]),
      }));
    } else {
      // A pause: the user is idle (lets the background syncer catch up now and then).
      await sleep(Math.random() * 5);
    }
    if (config.pauseMs) await sleep(Math.random() * config.pauseMs);
  }
}

/** startDraft, a few update()s (some flushed, some not), then finish(text), finish() or abort(). */
async function draft(user: string, n: number, known: Known): Promise<void> {
  const thread = pick(THREADS);
  let handle: Awaited<ReturnType<typeof store.startDraft>> | undefined;
  const started = await run(user, { n, op: 'draftStart', thread }, async () => {
    handle = await store.startDraft(user, 'assistant', threadOption(thread));
    return { id: handle.id };
  });
  if (!started || !handle) return;
  const flushMs = config.draftFlushMs ?? 20;
  const updates = 1 + Math.floor(Math.random() * 4);
  for (let k = 0; k < updates; k++) {
    const text = `${config.tag}:${user}:${n}:u${k}`;
    handle.update(text);
    out(`UPD ${user} ${JSON.stringify({ id: handle.id, text })}`);
    await sleep(Math.random() * flushMs * 2);
  }
  const way = Math.random();
  const how = way < 0.3 ? 'abort' : 'finish';
  const finalText = way < 0.3 || way > 0.8 ? undefined : `${config.tag}:${user}:${n}:final`;
  const d = handle;
  const ended = await run(user, { n, op: 'draftEnd', id: d.id, how, text: finalText ?? d.text }, async () =>
    summary(how === 'abort' ? await d.abort() : await d.finish(finalText)),
  );
  if (ended) known.add(d.id, thread);
}

async function abandonedDraft(): Promise<void> {
  const user = config.users[0] as string;
  const flushMs = config.draftFlushMs ?? 20;
  // A message before it, so the draft's thread has a history copy in Redis like a live chat's.
  await store.addMemory(user, 'user', `${config.tag}:question`, { thread: 't1' });
  const d = await store.startDraft(user, 'assistant', { thread: 't1' });
  let text = '';
  for (let k = 0; k < 6; k++) {
    text += `${config.tag}:chunk${k} `;
    d.update(text);
    await sleep(flushMs * 3);
  }
  // Well past draftFlushMs after the last update: its flush reached Redis.
  await sleep(Math.max(1000, flushMs * 20));
  out(`READY ${JSON.stringify({ user, id: d.id, thread: d.thread, text })}`);
}

setInterval(() => {}, 1 << 30); // alive until killed
if (config.mode === 'draft') {
  await abandonedDraft();
} else {
  if (config.startSync) store.startSync(config.startSync);
  await Promise.all(
    config.users.map((user) =>
      userLoop(user).catch((error: unknown) => {
        if (!(error instanceof StopUser)) out(`LOG error user loop ${user} crashed: ${oneLine(String(error))}`);
        out(`STOP ${user}`);
      }),
    ),
  );
}
