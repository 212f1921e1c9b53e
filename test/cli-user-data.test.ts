import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdGenerator } from '../src/model/ids.js';
import { type AppendOp, PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { BuiltCli, type CliRun } from './helpers/cli.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl, type Isolation } from './helpers/services.js';

// Issue 14 (export and retention): `export <userId>`, `inspect <userId>` and `purge`, run as the
// built binary against the real servers, with a password in the PostgreSQL URL that must never show.

const SECRET = `pw-${randomBytes(8).toString('hex')}`;
const PG = withPassword(databaseUrl(), SECRET);
const REDIS = redisUrl();
const DAY_MS = 86_400_000;

const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 2 });
const isolations: Isolation[] = [];
const stores: TieredStore[] = [];
const proxies: FaultProxy[] = [];
let cli: BuiltCli;

function names(name: string): Isolation {
  const n = isolation(`cliu_${name}`);
  isolations.push(n);
  return n;
}

async function run(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const result = await cli.run(args, env);
  expect(result.stdout + result.stderr).not.toContain(SECRET);
  return result;
}

function both(n: Isolation): Record<string, string> {
  return { REDIS_URL: REDIS, DATABASE_URL: PG, STORE_KEY_PREFIX: n.keyPrefix, STORE_SCHEMA: n.schema };
}

function store(n: Isolation, historyLimit = 10): TieredStore {
  const s = new TieredStore({
    logger: false,
    historyLimit,
    redis: new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix }),
    postgres: new PostgresAdapter({ url: databaseUrl(), schema: n.schema }),
  });
  stores.push(s);
  return s;
}

/** u1: 25 messages in 'main', 8 in 'side' (titled); u2: 3 in 'main'; hot copies of all of them. */
async function seed(s: TieredStore): Promise<void> {
  for (let i = 0; i < 25; i++) await s.addMemory('u1', i % 2 ? 'assistant' : 'user', `secret content ${i}`);
  for (let i = 0; i < 8; i++) await s.addMemory('u1', 'user', `side content ${i}`, { thread: 'side' });
  await s.setThreadTitle('u1', 'side', 'Side quest');
  await s.setUserPhone('u1', '+15550100');
  for (let i = 0; i < 3; i++) await s.addMemory('u2', 'user', `u2 content ${i}`);
  for (const [user, thread] of [
    ['u1', 'main'],
    ['u1', 'side'],
    ['u2', 'main'],
  ] as const)
    await s.getHistory(user, { thread });
}

/** Rows per user/thread in PostgreSQL, and the threads table's counts of them. */
async function counts(n: Isolation): Promise<{ rows: Record<string, number>; kept: Record<string, number> }> {
  const rows = await sql`select user_id || '/' || thread as k, count(*)::int as c from ${sql(`${n.schema}.messages`)} group by 1`;
  const kept = await sql`select user_id || '/' || thread as k, messages from ${sql(`${n.schema}.threads`)} where messages > 0 or title is not null`;
  return {
    rows: Object.fromEntries(rows.map((r) => [r.k as string, r.c as number])),
    kept: Object.fromEntries(kept.filter((r) => (r.messages as number) > 0).map((r) => [r.k as string, r.messages as number])),
  };
}

async function hotCopies(n: Isolation, user: string): Promise<string[]> {
  const redis = new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix });
  try {
    await redis.connect();
    return (await redis.holdings(user)).threads;
  } finally {
    await redis.close();
  }
}

beforeAll(async () => {
  cli = await BuiltCli.build();
}, 120_000);

afterAll(async () => {
  await cli?.close();
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(proxies.map((p) => p.close()));
  await sql.end();
  for (const n of isolations) {
    await cleanupRedis(REDIS, n.keyPrefix);
    await cleanupPostgres(databaseUrl(), n.schema);
  }
});

describe('export', () => {
  it('prints exportUser as JSON: every message of every thread, ISO dates, no secret', async () => {
    const n = names('export');
    await seed(store(n));
    const { code, stdout, stderr } = await run(['export', 'u1'], both(n));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const exported = JSON.parse(stdout);
    expect(exported).toMatchObject({ userId: 'u1', phone: '+15550100', booking: null, subscribed: false });
    expect(exported.exportedAt).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    const threads = Object.fromEntries(exported.threads.map((t: { id: string }) => [t.id, t]));
    expect(threads.main.messages).toHaveLength(25); // historyLimit is 10: all of them all the same
    expect(threads.main.messages[0]).toMatchObject({ content: 'secret content 0', role: 'user', thread: 'main' });
    expect(threads.main.messages[0].createdAt).toMatch(/Z$/);
    expect(threads.side).toMatchObject({ title: 'Side quest', summary: null });
    expect(threads.side.messages).toHaveLength(8);
  });

  it('usage: a user id is needed, and must be a valid one; no server configured is a usage error', async () => {
    const n = names('export_usage');
    const missing = await run(['export'], both(n));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing the user id');
    const bad = await run(['export', 'not a valid id!'], both(n));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('user id');
    const none = await run(['export', 'u1']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('REDIS_URL');
  });

  it('PostgreSQL unreachable: exit 1 and no JSON rather than a partial export', async () => {
    const n = names('export_down');
    const p = await FaultProxy.start(databaseUrl());
    proxies.push(p);
    await p.refuse();
    const { code, stdout, stderr } = await run(['export', 'u1', '--timeout', '500'], { ...both(n), DATABASE_URL: withPassword(p.url(databaseUrl()), SECRET) });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/unreachable|STORE_UNAVAILABLE/);
  });
});

describe('inspect', () => {
  it('shows threads, counts, hot copies, pending writes and the tiers holding the user; never contents', async () => {
    const n = names('inspect');
    const seeded = store(n);
    await seed(seeded);
    // Closed, so that it cannot move the pending write below (a store moves leftovers soon after it starts).
    await seeded.close();
    // One write only Redis's journal holds (PostgreSQL refuses connections).
    const p = await FaultProxy.start(databaseUrl());
    proxies.push(p);
    await p.refuse();
    const pending = new TieredStore({
      logger: false,
      writeMode: 'write-behind',
      redis: new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix }),
      postgres: new PostgresAdapter({ url: p.url(databaseUrl()), schema: n.schema }),
    });
    await pending.addMemory('u1', 'user', 'pending content', { thread: 'fresh' });
    await pending.close();

    const text = await run(['inspect', 'u1'], both(n));
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('user "u1": 3 threads');
    expect(text.stdout).toMatch(/^ {2}main +25 messages +last activity \S+Z +hot copy in Redis$/m);
    expect(text.stdout).toMatch(/^ {2}side +8 messages .*hot copy in Redis {2}"Side quest"$/m);
    expect(text.stdout).toMatch(/^ {2}fresh +1 message +last activity \S+Z$/m);
    expect(text.stdout).toContain("pending: 1 write in Redis's journal");
    expect(text.stdout).toContain('held by: redis, postgres');
    expect(text.stdout).not.toContain('content');

    const json = await run(['inspect', 'u1', '--json'], both(n));
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ ok: true, userId: 'u1', heldBy: ['redis', 'postgres'], errors: [] });
    expect(report.redis).toMatchObject({ reachable: true, journal: 1 });
    expect(report.redis.hotThreads.sort()).toEqual(['main', 'side']);
    expect(report.postgres).toMatchObject({ reachable: true, threads: 2, messages: 33, userRow: true });
    expect(report.threads.map((t: { id: string; messages: number; hot: boolean }) => [t.id, t.messages, t.hot]).sort()).toEqual([
      ['fresh', 1, false],
      ['main', 25, true],
      ['side', 8, true],
    ]);

    const nobody = JSON.parse((await run(['inspect', 'nobody', '--json'], both(n))).stdout);
    expect(nobody).toMatchObject({ threads: [], heldBy: [] });
  });

  it('PostgreSQL unreachable: says so and exits 1 (password masked)', async () => {
    const n = names('inspect_down');
    const p = await FaultProxy.start(databaseUrl());
    proxies.push(p);
    await p.refuse();
    const { code, stdout, stderr } = await run(['inspect', 'u1', '--json', '--timeout', '500'], {
      ...both(n),
      DATABASE_URL: withPassword(p.url(databaseUrl()), SECRET),
    });
    expect(code).toBe(1);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ ok: false, postgres: { reachable: false }, errors: ['postgres is unreachable'] });
    expect(stderr).not.toContain(SECRET);
  });
});

describe('purge', () => {
  it('--keep-last N (below historyLimit): dry run changes nothing; the real run deletes in batches, keeps counts right, drops hot copies, and a replay cannot resurrect', async () => {
    const n = names('purge_keep');
    const s = store(n, 10);
    await seed(s);
    const before = await counts(n);
    expect(before.rows).toEqual({ 'u1/main': 25, 'u1/side': 8, 'u2/main': 3 });
    const [victim, second] = await s.getHistory('u1', { limit: 100 });

    const dry = await run(['purge', '--keep-last', '3', '--dry-run', '--batch', '10'], both(n));
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run');
    expect(dry.stdout).toMatch(/^batch 1 \(keep-last\): would remove 10 messages$/m);
    expect(dry.stdout).toContain('would remove 27 messages in 3 batches');
    expect(dry.stdout).not.toContain('content');
    expect(await counts(n)).toEqual(before);
    expect(await hotCopies(n, 'u1')).toEqual(['main', 'side']);
    // The store's in-process copies serve too (read twice); the purge's Redis changes invalidate them.
    for (let i = 0; i < 2; i++) for (const thread of ['main', 'side']) await s.getHistory('u1', { thread });
    const hits = s.stats().l1.hits;
    for (const thread of ['main', 'side']) await s.getHistory('u1', { thread });
    expect(s.stats().l1.hits).toBe(hits + 2);

    const real = await run(['purge', '--keep-last', '3', '--batch', '10'], both(n));
    expect(real.stderr).toBe('');
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/^batch 1 \(keep-last\): removed 10 messages$/m);
    expect(real.stdout).toMatch(/^ {2}user u1 thread main: 10 messages$/m);
    expect(real.stdout).toMatch(/^batch 3 \(keep-last\): removed 7 messages$/m);
    expect(real.stdout).toContain('removed 27 messages in 3 batches');
    expect(real.stdout).toContain('dropped the hot copies of 1 user in Redis');
    expect(real.stdout).not.toContain('content');
    const after = await counts(n);
    expect(after.rows).toEqual({ 'u1/main': 3, 'u1/side': 3, 'u2/main': 3 });
    expect(after.kept).toEqual(after.rows);
    expect(await hotCopies(n, 'u1')).toEqual([]);
    expect(await hotCopies(n, 'u2')).toEqual(['main']); // untouched user keeps its copy

    // The process that held the hot copy reads what PostgreSQL has, at once.
    expect((await s.getHistory('u1')).map((m) => m.content)).toEqual(['secret content 22', 'secret content 23', 'secret content 24']);
    expect((await s.getHistory('u1', { thread: 'side' })).map((m) => m.content)).toEqual(['side content 5', 'side content 6', 'side content 7']);
    expect((await s.listThreads('u1')).threads.map((t) => [t.id, t.messages]).sort()).toEqual([
      ['main', 3],
      ['side', 3],
    ]);
    expect(await s.getMessage('u1', victim!.id)).toBeNull();

    // Journal entries of purged messages replayed into PostgreSQL (a syncer retrying) are refused,
    // one alone (the one-statement path) and several in a batch.
    const replay = (m: typeof victim): AppendOp => ({
      kind: 'append',
      user: 'u1',
      id: m!.id,
      thread: 'main',
      role: 'user',
      content: m!.content,
      createdAt: m!.createdAt.getTime(),
    });
    const adapter = new PostgresAdapter({ url: databaseUrl(), schema: n.schema });
    try {
      await adapter.write([replay(victim)]);
      await adapter.write([replay(victim), replay(second)]);
    } finally {
      await adapter.close();
    }
    expect((await counts(n)).rows['u1/main']).toBe(3);
    expect((await s.getHistory('u1', { limit: 100 })).map((m) => m.content)).toEqual(['secret content 22', 'secret content 23', 'secret content 24']);
    // New messages still land.
    await s.addMemory('u1', 'user', 'after purge');
    expect((await s.getHistory('u1')).map((m) => m.content).at(-1)).toBe('after purge');
  });

  it('a write journaled in Redis before the purge and synced after it does not come back', async () => {
    const n = names('purge_journal');
    // An old message that only Redis's journal holds (its process could not reach PostgreSQL)...
    const p = await FaultProxy.start(databaseUrl());
    proxies.push(p);
    await p.refuse();
    const away = new TieredStore({
      logger: false,
      writeMode: 'write-behind',
      redis: new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix }),
      postgres: new PostgresAdapter({ url: p.url(databaseUrl()), schema: n.schema }),
    });
    await away.addMemory('u1', 'user', 'journaled');
    await away.close();
    // ...then newer ones that PostgreSQL has (written by a store closed before the purge, so
    // that nothing moves the journal before it).
    const writer = store(n);
    for (let i = 0; i < 4; i++) await writer.addMemory('u1', 'user', `newer ${i}`);
    await writer.close();
    const redis = new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix });
    await redis.connect();
    expect((await redis.holdings('u1')).journal).toBe(1);
    await redis.close();

    const purged = await run(['purge', '--keep-last', '2'], both(n));
    expect(purged.code).toBe(0);
    expect(purged.stdout).toContain('removed 2 messages');
    // Reads lay the journal over the thread's new floor, and the sync's replay is refused.
    const reader = store(n);
    expect((await reader.getHistory('u1')).map((m) => m.content)).toEqual(['newer 2', 'newer 3']);
    expect((await reader.syncNow()).pending).toBe(0);
    expect((await reader.getHistory('u1', { limit: 100 })).map((m) => m.content)).toEqual(['newer 2', 'newer 3']);
    expect((await counts(n)).rows).toEqual({ 'u1/main': 2 });
  });

  it('--max-age-days N: only messages older than N days go, by batch; dry run first', async () => {
    const n = names('purge_age');
    const s = store(n, 10);
    await s.addMemory('old', 'user', 'warm up'); // migrates the schema
    // 12 messages of ten days ago, as a long-lived bot has them.
    const oldId = createIdGenerator(() => Date.now() - 10 * DAY_MS);
    const adapter = new PostgresAdapter({ url: databaseUrl(), schema: n.schema });
    const old: AppendOp[] = [];
    for (let i = 0; i < 12; i++) {
      const id = oldId();
      old.push({
        kind: 'append',
        user: i % 2 ? 'old' : 'other',
        id,
        thread: 'main',
        role: 'user',
        content: `old content ${i}`,
        createdAt: Date.now() - 10 * DAY_MS,
      });
    }
    try {
      await adapter.write(old);
    } finally {
      await adapter.close();
    }
    await s.addMemory('old', 'user', 'recent');
    expect(await s.getHistory('old')).toHaveLength(8);
    const before = await counts(n);
    expect(before.rows).toEqual({ 'old/main': 8, 'other/main': 6 });

    const dry = await run(['purge', '--max-age-days', '5', '--dry-run', '--batch', '5', '--json'], both(n));
    expect(dry.code).toBe(0);
    const report = JSON.parse(dry.stdout);
    expect(report).toMatchObject({ ok: true, dryRun: true, maxAgeDays: 5, messages: 12, invalidated: 0 });
    expect(report.batches).toHaveLength(3);
    expect(await counts(n)).toEqual(before);

    const real = await run(['purge', '--max-age-days', '5', '--batch', '5'], both(n));
    expect(real.code).toBe(0);
    expect(real.stdout).toContain('removed 12 messages in 3 batches');
    const after = await counts(n);
    expect(after.rows).toEqual({ 'old/main': 2 });
    expect(after.kept).toEqual(after.rows);
    expect((await s.getHistory('old')).map((m) => m.content)).toEqual(['warm up', 'recent']);
    expect(await s.getHistory('other')).toEqual([]);
  });

  it('usage: a rule is needed, PostgreSQL is needed, and Redis must answer before anything is deleted', async () => {
    const n = names('purge_usage');
    const noRule = await run(['purge'], both(n));
    expect(noRule.code).toBe(2);
    expect(noRule.stderr).toContain('--max-age-days');
    const bad = await run(['purge', '--keep-last', '-1'], both(n));
    expect(bad.code).toBe(2);
    const noPg = await run(['purge', '--keep-last', '3'], { REDIS_URL: REDIS });
    expect(noPg.code).toBe(2);
    expect(noPg.stderr).toContain('DATABASE_URL');

    const s = store(n);
    await seed(s);
    const before = await counts(n);
    const p = await FaultProxy.start(REDIS);
    proxies.push(p);
    await p.refuse();
    const down = await run(['purge', '--keep-last', '1', '--timeout', '500'], { ...both(n), REDIS_URL: p.url(REDIS) });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('redis is unreachable');
    expect(await counts(n)).toEqual(before);
  });
});

function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  if (!parsed.username) parsed.username = 'postgres';
  parsed.password = password;
  return parsed.toString();
}
