import postgres from 'postgres';
import { PostgresAdapter, RedisAdapter, TieredStore, type Message, type TieredStoreOptions, type WriteMode } from '../../src/index.js';
import { Worker } from './worker.js';

/** What test/helpers/conversation-crash-worker.ts does; passed as JSON in CRASH_CONFIG. */
export interface ConversationCrashConfig {
  /** `ops`: every user loops over random version-2 ops. `draft`: one draft, abandoned after READY. */
  mode: 'ops' | 'draft';
  redisUrl: string;
  databaseUrl: string;
  keyPrefix: string;
  schema: string;
  writeMode: WriteMode;
  redisTimeoutMs?: number;
  pgTimeoutMs?: number;
  users: string[];
  /** Start of every content and title this child writes. */
  tag: string;
  /** Up to this many ms (random) between one user's ops. */
  pauseMs?: number;
  /** startSync(interval): background passes while the ops run. */
  startSync?: number;
  draftFlushMs?: number;
  /** Encryption at rest with this master key (hex) as 'k1'. */
  encryptionKeyHex?: string;
}

/** An op as the worker describes it in START, and (with its result) in ACK and FAIL. */
export type OpDesc =
  | { n: number; op: 'add'; thread: string; content: string }
  | { n: number; op: 'edit'; target: string; content: string }
  | { n: number; op: 'delete'; target: string }
  | { n: number; op: 'truncate'; target: string }
  | { n: number; op: 'title'; thread: string; title: string | null }
  | { n: number; op: 'clear'; thread: string }
  | { n: number; op: 'dropThread'; thread: string }
  | { n: number; op: 'draftStart'; thread: string }
  | { n: number; op: 'read'; thread: string }
  | { n: number; op: 'draftEnd'; id: string; how: 'finish' | 'abort'; text: string };

/** An ACK line: the op and what it resolved to. */
export type Acked = OpDesc & {
  id?: string;
  found?: boolean;
  existed?: boolean;
  removed?: number;
  content?: string;
  status?: string;
  /** A read's answer: [id, content, status] of each message, oldest first. */
  got?: [string, string, string | null][];
};

export interface UserLog {
  acked: Acked[];
  /** The op started and neither acknowledged nor failed when the process died; or one that failed with an unknown outcome. */
  uncertain: OpDesc | undefined;
  /** Failures that wrote nothing (a lookup by id that could not tell). */
  harmlessFailures: number;
  /** Every text each draft was given through update(). */
  updates: Map<string, string[]>;
  stopped: boolean;
}

const children = new Set<ConversationChild>();

/** A conversation-crash-worker child: every user's acknowledged ops in order, the op in flight, a SIGKILL. */
export class ConversationChild {
  readonly users = new Map<string, UserLog>();
  readonly lines: string[] = [];
  readonly failures: string[] = [];
  readonly exited: Promise<number | null>;
  ackCount = 0;
  #inflight = new Map<string, OpDesc>();
  #waiters: { test: () => boolean; resolve: () => void }[] = [];
  readonly #worker: Worker;

  private constructor(config: ConversationCrashConfig) {
    this.#worker = new Worker('test/helpers/conversation-crash-worker.ts', { CRASH_CONFIG: JSON.stringify(config) }, (line) => this.#line(line));
    this.exited = this.#worker.exited;
    void this.exited.then(() => children.delete(this));
  }

  static start(config: ConversationCrashConfig): ConversationChild {
    const c = new ConversationChild(config);
    for (const user of config.users) c.users.set(user, { acked: [], uncertain: undefined, harmlessFailures: 0, updates: new Map(), stopped: false });
    children.add(c);
    return c;
  }

  #line(line: string): void {
    this.lines.push(line);
    const space = line.indexOf(' ');
    const tag = line.slice(0, space);
    const rest = line.slice(space + 1);
    const second = rest.indexOf(' ');
    const user = rest.slice(0, second);
    const log = this.users.get(user);
    if (log && ['START', 'ACK', 'FAIL', 'UPD'].includes(tag)) {
      const json = JSON.parse(rest.slice(second + 1)) as Record<string, unknown>;
      if (tag === 'START') this.#inflight.set(user, json as unknown as OpDesc);
      else if (tag === 'ACK') {
        this.#inflight.delete(user);
        log.acked.push(json as unknown as Acked);
        this.ackCount++;
      } else if (tag === 'UPD') {
        const texts = log.updates.get(json.id as string) ?? [];
        texts.push(json.text as string);
        log.updates.set(json.id as string, texts);
      } else {
        this.#inflight.delete(user);
        this.failures.push(line);
        if (json.nothingWritten) log.harmlessFailures++;
        else log.uncertain = json as unknown as OpDesc;
      }
    } else if (tag === 'STOP' && log) {
      log.stopped = true;
    }
    const met = this.#waiters.filter((w) => w.test());
    this.#waiters = this.#waiters.filter((w) => !met.includes(w));
    for (const w of met) w.resolve();
  }

  /** Resolves once `test` holds (checked after every line); rejects after `timeoutMs` or if the child exits. */
  waitUntil(test: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`conversation crash worker: no ${what} within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
      this.#waiters.push({
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`conversation crash worker exited (${code}) before ${what}\n${this.tail()}`));
      });
    });
  }

  /** Resolves once `n` ops were acknowledged; rejects at once when every user's loop stopped on a failure. */
  async acks(n: number, timeoutMs = 30_000): Promise<void> {
    const stopped = () => [...this.users.values()].every((log) => log.stopped);
    await this.waitUntil(() => this.ackCount >= n || stopped(), timeoutMs, `${n} acknowledged ops`);
    if (this.ackCount < n)
      throw new Error(`every user's loop stopped on a failure after ${this.ackCount} acknowledged ops:\n${this.failures.slice(-4).join('\n')}`);
  }

  /** The first line starting with `prefix`. */
  async line(prefix: string, timeoutMs: number): Promise<string> {
    await this.waitUntil(() => this.lines.some((l) => l.startsWith(prefix)), timeoutMs, `${prefix} line`);
    return this.lines.find((l) => l.startsWith(prefix)) as string;
  }

  /** The child's stderr (the last 4000 characters): why it died, when it died by itself. */
  get stderr(): string {
    return this.#worker.stderr;
  }

  /** Whether the process ended without our SIGKILL. */
  get diedByItself(): boolean {
    return this.#worker.child.exitCode !== null;
  }

  tail(lines = 15): string {
    return [...this.lines.slice(-lines), this.#worker.stderr.trim()].filter(Boolean).join('\n');
  }

  /** SIGKILL; what was in flight becomes each user's uncertain op. */
  async kill(): Promise<void> {
    await this.#worker.kill();
    for (const [user, op] of this.#inflight) {
      const log = this.users.get(user) as UserLog;
      if (log.uncertain) throw new Error(`user ${user} has an op in flight after one that failed: its loop should have stopped`);
      log.uncertain = op;
    }
    this.#inflight.clear();
  }
}

export async function killAllConversationChildren(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
}

// ---- the model

export interface ModelMessage {
  /** Unknown for an add or a draft start whose ACK never came. */
  id: string | undefined;
  thread: string;
  content: string;
  status: 'streaming' | 'aborted' | undefined;
  /** A draft still streaming may hold any text its process flushed: the contents accepted. */
  accept?: string[];
}

export interface Model {
  /** In id order (each user's ops are sequential, and ids of one process increase). */
  messages: ModelMessage[];
  titles: Map<string, string | null>;
  /** Where an op's answer disagreed with the model (a read that missed an earlier write). */
  answers: string[];
}

/** The fold of a user's ops in order; `result` is undefined for the uncertain op (it may have landed). */
export function fold(log: UserLog, extra?: OpDesc, checkReads = true): Model {
  const model: Model = { messages: [], titles: new Map(), answers: [] };
  for (const op of log.acked) apply(model, op, op, log, checkReads);
  if (extra) apply(model, extra, undefined, log, checkReads);
  return model;
}

function apply(model: Model, op: OpDesc, result: Acked | undefined, log: UserLog, checkReads: boolean): void {
  const find = (id: string) => model.messages.find((m) => m.id === id);
  const answer = (what: string, got: unknown, want: unknown) => {
    if (result && got !== want) model.answers.push(`op ${op.n} ${op.op}: ${what} answered ${String(got)}, the acknowledged ops say ${String(want)}`);
  };
  switch (op.op) {
    case 'add':
      model.messages.push({ id: result?.id, thread: op.thread, content: op.content, status: undefined });
      return;
    case 'edit': {
      const m = find(op.target);
      answer('updateMessage found', result?.found, m !== undefined);
      if (m) {
        m.content = op.content;
        delete m.accept;
      }
      return;
    }
    case 'delete': {
      const m = find(op.target);
      answer('deleteMessage existed', result?.existed, m !== undefined);
      if (m) model.messages.splice(model.messages.indexOf(m), 1);
      return;
    }
    case 'truncate': {
      const m = find(op.target);
      const doomed = m ? model.messages.filter((x) => x.thread === m.thread && x.id !== undefined && x.id > op.target) : [];
      // Its count comes from a history read, which PostgreSQL's absence degrades like any read.
      if (checkReads) answer('truncateAfter removed', result?.removed, doomed.length);
      model.messages = model.messages.filter((x) => !doomed.includes(x));
      return;
    }
    case 'title':
      model.titles.set(op.thread, op.title);
      return;
    case 'clear':
      model.messages = model.messages.filter((m) => m.thread !== op.thread);
      return;
    case 'dropThread':
      model.messages = model.messages.filter((m) => m.thread !== op.thread);
      model.titles.set(op.thread, null);
      return;
    case 'draftStart': {
      const id = result?.id;
      const updates = id === undefined ? [] : (log.updates.get(id) ?? []);
      model.messages.push({ id, thread: op.thread, content: '', status: 'streaming', accept: ['', ...updates] });
      return;
    }
    case 'read': {
      if (!result || !checkReads) return;
      const want = model.messages
        .filter((m) => m.thread === op.thread)
        .slice(-20)
        .map((m) => [m.id, m.content, m.status ?? null]);
      answer('getHistory', JSON.stringify(result.got), JSON.stringify(want));
      return;
    }
    case 'draftEnd': {
      const m = find(op.id);
      if (!m) {
        if (result) model.answers.push(`op ${op.n} draftEnd: draft ${op.id} is not in the model`);
        return;
      }
      m.content = op.text;
      m.status = op.how === 'abort' ? 'aborted' : undefined;
      delete m.accept;
      if (result) answer('the draft ended with content', result.content, op.text);
      return;
    }
  }
}

export interface Row {
  id: string;
  thread: string;
  content: string;
  status: string | null;
}

/** What differs between the model and what is stored for the user (empty: they agree). */
export function differences(model: Model, rows: readonly Row[], titles: ReadonlyMap<string, string | null>): string[] {
  const problems: string[] = [];
  const left = new Map(rows.map((r) => [r.id, r]));
  const contents = new Map<string, number>();
  for (const r of rows) if (r.content !== '') contents.set(r.content, (contents.get(r.content) ?? 0) + 1);
  for (const [content, n] of contents) if (n > 1) problems.push(`content ${content} stored ${n} times`);
  const same = (m: ModelMessage, r: Row) => r.thread === m.thread && (r.status ?? undefined) === m.status && (m.accept ?? [m.content]).includes(r.content);
  const show = (m: ModelMessage) => `${m.id ?? '(in flight)'} ${m.thread} ${JSON.stringify(m.content)}${m.status ? ` ${m.status}` : ''}`;
  const showRow = (r: Row) => `${r.id} ${r.thread} ${JSON.stringify(r.content)}${r.status ? ` ${r.status}` : ''}`;
  for (const m of model.messages) {
    if (m.id === undefined) continue;
    const r = left.get(m.id);
    if (!r) problems.push(`missing ${show(m)}`);
    else if (!same(m, r)) problems.push(`wrong: want ${show(m)}${m.accept ? ` (or ${JSON.stringify(m.accept)})` : ''}, stored ${showRow(r)}`);
    left.delete(m.id);
  }
  // An op in flight at the kill has no known id: any stored row that matches it.
  for (const m of model.messages) {
    if (m.id !== undefined) continue;
    const r = [...left.values()].find((x) => same(m, x));
    if (r) left.delete(r.id);
    else problems.push(`missing ${show(m)}`);
  }
  for (const r of left.values()) problems.push(`stored but removed or never acknowledged: ${showRow(r)}`);
  for (const thread of new Set([...model.titles.keys(), ...titles.keys()])) {
    const want = model.titles.get(thread) ?? null;
    const got = titles.get(thread) ?? null;
    if (want !== got) problems.push(`title of ${thread}: want ${JSON.stringify(want)}, stored ${JSON.stringify(got)}`);
  }
  return problems;
}

/**
 * The user's outcome: what differs from the fold of its acknowledged ops, or from that plus its
 * uncertain op, whichever fits better. `checkReads`: each read's answer (and truncateAfter's
 * count, which comes from a read) must be the fold of the ops before it; not while PostgreSQL is
 * away: a read that misses Redis's copy then answers with what this process holds, by design.
 */
export function judge(
  log: UserLog,
  rows: readonly Row[],
  titles: ReadonlyMap<string, string | null>,
  checkReads = true,
): { problems: string[]; withUncertain: boolean } {
  const base = fold(log, undefined, checkReads);
  const without = [...base.answers, ...differences(base, rows, titles)];
  if (without.length === 0 || !log.uncertain) return { problems: without, withUncertain: false };
  const more = fold(log, log.uncertain, checkReads);
  const withIt = [...more.answers, ...differences(more, rows, titles)];
  if (withIt.length === 0) return { problems: [], withUncertain: true };
  return withIt.length < without.length ? { problems: withIt, withUncertain: true } : { problems: without, withUncertain: false };
}

// ---- what is stored

export interface Stored {
  rows: Map<string, Row[]>;
  titles: Map<string, Map<string, string | null>>;
  /** Threads whose `messages` count (kept by the adapter's inserts and a delete trigger) differs from their rows. */
  miscounted: string[];
}

/** Every message and thread title in the schema, read from PostgreSQL directly, per user. */
export async function readPostgres(
  databaseUrl: string,
  schema: string,
  /** Opens sealed values (encryption at rest). */
  open: (user: string, field: 'content' | 'title', value: string) => Promise<string> = async (_u, _f, value) => value,
): Promise<Stored> {
  const sql = postgres(databaseUrl, { onnotice: () => {}, max: 1 });
  try {
    const messages = await sql`select user_id, id, thread, content, status from ${sql(`${schema}.messages`)} order by user_id, id`;
    const rows = new Map<string, Row[]>();
    for (const r of messages) {
      const list = rows.get(r.user_id as string) ?? [];
      rows.set(r.user_id as string, list);
      const content = await open(r.user_id as string, 'content', r.content as string);
      list.push({ id: r.id as string, thread: r.thread as string, content, status: (r.status as string | null) ?? null });
    }
    const titles = new Map<string, Map<string, string | null>>();
    const miscounted: string[] = [];
    for (const r of await sql`select user_id, thread, title, messages from ${sql(`${schema}.threads`)}`) {
      const map = titles.get(r.user_id as string) ?? new Map<string, string | null>();
      titles.set(r.user_id as string, map);
      if (r.title !== null) map.set(r.thread as string, await open(r.user_id as string, 'title', r.title as string));
      const n = (rows.get(r.user_id as string) ?? []).filter((m) => m.thread === r.thread).length;
      if (r.messages !== n) miscounted.push(`${r.user_id}/${r.thread}: threads.messages ${r.messages}, ${n} rows`);
    }
    return { rows, titles, miscounted };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A fresh process's reads (getHistory of each thread, through the cache and past it; listThreads) against what PostgreSQL holds. */
export async function readsDisagree(
  names: { keyPrefix: string; schema: string },
  urls: { redis: string; database: string },
  stored: Stored,
  users: readonly string[],
  threads: readonly string[],
  options: TieredStoreOptions = {},
): Promise<string[]> {
  const store = new TieredStore({
    logger: false,
    ...options,
    redis: new RedisAdapter({ url: urls.redis, keyPrefix: names.keyPrefix }),
    postgres: new PostgresAdapter({ url: urls.database, schema: names.schema }),
  });
  const problems: string[] = [];
  // A draft still streaming shows in a read the text its process flushed to Redis; PostgreSQL has its start.
  const brief = (m: Pick<Row, 'id' | 'content' | 'thread'> & { status?: string | null }) =>
    `${m.id}:${m.thread}:${m.status === 'streaming' ? '(streaming)' : m.content}:${m.status ?? ''}`;
  try {
    for (const user of users) {
      const rows = stored.rows.get(user) ?? [];
      const titles = stored.titles.get(user) ?? new Map<string, string | null>();
      for (const thread of threads) {
        const want = rows.filter((r) => r.thread === thread).map(brief);
        const all = (await store.getHistory(user, { thread, limit: 10_000 })).map((m: Message) => brief(m));
        if (JSON.stringify(all) !== JSON.stringify(want))
          problems.push(`${user}/${thread}: getHistory(limit 10000) ${JSON.stringify(all)} but PostgreSQL ${JSON.stringify(want)}`);
        // Twice through the cache's copy: the first read fills it, the second is served from it.
        for (const pass of ['filling', 'cached']) {
          const hot = (await store.getHistory(user, { thread, limit: 20 })).map((m: Message) => brief(m));
          if (JSON.stringify(hot) !== JSON.stringify(want.slice(-20))) {
            problems.push(`${user}/${thread}: getHistory(limit 20, ${pass}) ${JSON.stringify(hot)} but PostgreSQL ${JSON.stringify(want.slice(-20))}`);
          }
        }
      }
      const listed = (await store.listThreads(user, { limit: 100 })).threads;
      const expected = threads
        .map((thread) => ({ id: thread, title: titles.get(thread) ?? null, messages: rows.filter((r) => r.thread === thread).length }))
        .filter((t) => t.messages > 0 || t.title !== null);
      const show = (list: { id: string; title: string | null; messages: number }[]) =>
        JSON.stringify(list.map((t) => `${t.id}:${t.title}:${t.messages}`).sort());
      if (show(listed) !== show(expected)) problems.push(`${user}: listThreads ${show(listed)} but PostgreSQL ${show(expected)}`);
    }
  } finally {
    await store.close({ timeoutMs: 2000 });
  }
  return problems;
}
