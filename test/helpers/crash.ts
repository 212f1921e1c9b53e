import postgres from 'postgres';
import { Worker } from './worker.js';
import { PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions, type WriteMode } from '../../src/index.js';

/** Where a sync pass holds a step until a write for its user is acknowledged, and after which step it stops. */
export interface StepPlan {
  inject?: string | undefined;
  kill?: string | undefined;
}

/** What test/helpers/crash-worker.ts does; passed as JSON in CRASH_CONFIG. */
export interface CrashConfig {
  mode: 'stream' | 'sync-steps';
  redis: { url: string } | { nodes: string[] };
  databaseUrl: string;
  keyPrefix: string;
  schema: string;
  writeMode: WriteMode;
  redisTimeoutMs?: number;
  pgTimeoutMs?: number;
  probeIntervalMs?: number;
  writers: number;
  users: string[];
  /** Start of every content this child writes (unique per child). */
  tag: string;
  /** Writes per writer (0: until killed); in sync-steps mode, per writer before each pass. */
  count?: number;
  /** Up to this many ms (random) between one writer's writes. */
  pauseMs?: number;
  /** startSync(interval) in stream mode. */
  startSync?: number;
  reportPendingMs?: number;
  steps?: { enumerate?: boolean; plan?: StepPlan } | undefined;
}

const children = new Set<CrashChild>();

/** A crash-worker child: what it acknowledged, what it logged, and a SIGKILL. */
export class CrashChild {
  /** content -> user, for every ACK line. */
  readonly acked = new Map<string, string>();
  readonly durations: number[] = [];
  readonly failures: string[] = [];
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  readonly #worker: Worker;

  private constructor(config: CrashConfig) {
    this.#worker = new Worker('test/helpers/crash-worker.ts', { CRASH_CONFIG: JSON.stringify(config) }, (line) => this.#line(line));
    this.exited = this.#worker.exited;
    void this.exited.then(() => children.delete(this));
  }

  static start(config: CrashConfig): CrashChild {
    const crash = new CrashChild(config);
    children.add(crash);
    return crash;
  }

  #line(line: string): void {
    this.lines.push(line);
    const [tag, user, content, ms] = line.split(' ');
    if (tag === 'ACK') {
      this.acked.set(content as string, user as string);
      this.durations.push(Number(ms));
    } else if (tag === 'FAIL') {
      this.failures.push(line);
      this.durations.push(Number(ms));
    }
    const met = this.#waiters.filter((w) => w.test(line));
    this.#waiters = this.#waiters.filter((w) => !met.includes(w));
    for (const w of met) w.resolve(line);
  }

  /** The first line (already printed or to come) that passes `test`; rejects after `timeoutMs` or if the child exits. */
  waitFor(test: (line: string) => boolean, timeoutMs: number, what = 'a line'): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`crash worker: no ${what} within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
      const done = (line: string) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.#waiters.push({ test, resolve: done });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`crash worker exited (${code}) before ${what}\n${this.tail()}`));
      });
    });
  }

  /** Resolves once the child has acknowledged at least `n` writes. */
  acks(n: number, timeoutMs = 15_000): Promise<string> {
    return this.waitFor(() => this.acked.size >= n, timeoutMs, `${n} acknowledged writes`);
  }

  get slowest(): number {
    return Math.max(0, ...this.durations);
  }

  tail(lines = 15): string {
    return [...this.lines.slice(-lines), this.#worker.stderr.trim()].filter(Boolean).join('\n');
  }

  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void> {
    return this.#worker.kill();
  }
}

/** Kills every child still running (for afterEach/afterAll: a failing test leaves none behind). */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
}

export interface StoredCheck {
  acked: number;
  /** Acknowledged contents with no row in PostgreSQL. */
  missing: string[];
  /** Contents with more than one row. */
  duplicated: string[];
}

/** Every acknowledged content has exactly one row in `<schema>.messages`; no content has two. */
export async function checkStored(databaseUrl: string, schema: string, acked: Map<string, string>, tag: string): Promise<StoredCheck> {
  const sql = postgres(databaseUrl, { onnotice: () => {}, max: 1 });
  try {
    const rows = await sql`select user_id, content, count(*)::int as n from ${sql(`${schema}.messages`)}
      where content like ${`${tag}:%`} group by user_id, content`;
    const stored = new Map(rows.map((r) => [`${r.user_id as string} ${r.content as string}`, r.n as number]));
    const missing = [...acked].filter(([content, user]) => !stored.has(`${user} ${content}`)).map(([content, user]) => `${user} ${content}`);
    const duplicated = [...stored].filter(([, n]) => n > 1).map(([key, n]) => `${key} x${n}`);
    return { acked: acked.size, missing, duplicated };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * A fresh process's view: a store (no hooks, no startSync) with the same names runs syncNow until
 * nothing is pending or `timeoutMs` passes. Returns the last pending count, what each pass moved and
 * how long the slowest pass took.
 */
export async function recover(
  where: { url: string } | { nodes: string[] },
  databaseUrl: string,
  names: { keyPrefix: string; schema: string },
  timeoutMs = 10_000,
  options: TieredStoreOptions = {},
): Promise<{ pending: number; moved: number[]; slowestPassMs: number }> {
  const store = new TieredStore({
    logger: false,
    ...options,
    redis: new RedisAdapter({ ...where, keyPrefix: names.keyPrefix }),
    postgres: new PostgresAdapter({ url: databaseUrl, schema: names.schema }),
  });
  const moved: number[] = [];
  const deadline = Date.now() + timeoutMs;
  let pending = -1;
  let slowestPassMs = 0;
  try {
    while (Date.now() < deadline) {
      const began = performance.now();
      const result = await store.syncNow().catch(() => undefined);
      slowestPassMs = Math.max(slowestPassMs, Math.round(performance.now() - began));
      if (result) {
        moved.push(result.messages);
        pending = result.pending;
        if (pending === 0) break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await store.close({ timeoutMs: 2000 });
  }
  return { pending, moved, slowestPassMs };
}

/**
 * Waits, without syncing anything itself, until Redis's pending count under `keyPrefix` is zero;
 * returns the last count seen (0: drained within `timeoutMs`).
 */
export async function drainedOnItsOwn(url: string, keyPrefix: string, timeoutMs = 15_000): Promise<number> {
  const observer = new RedisAdapter({ url, keyPrefix });
  let left = -1;
  try {
    await observer.connect();
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      left = await observer.pendingCount().catch(() => -1);
      if (left === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await observer.close();
  }
  return left;
}

/** The child's last few log lines, for a failure message. */
export function logsOf(child: CrashChild, lines = 12): string {
  return child.lines
    .filter((l) => l.startsWith('LOG'))
    .slice(-lines)
    .join('\n');
}

/** For a failure message only: the background-sync lease as the store named it when these tests were written. */
export async function leaseOf(url: string, keyPrefix: string): Promise<string> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  try {
    await client.connect();
    const ttl = await client.pttl(`${keyPrefix}:{sync}:lock`);
    return ttl === -2 ? 'no sync lease held' : `the sync lease is held for another ${ttl} ms`;
  } catch (error) {
    return `lease unknown (${(error as Error).message})`;
  } finally {
    client.disconnect();
  }
}
