// npm run bench:scale — the messages table at 10 million rows: does getHistory stay flat, and how
// fast does retention trim? Not part of npm run bench (it takes minutes and a few GB of disk).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import postgres from 'postgres';
import { PostgresAdapter, TieredStore } from '../src/index.js';
import { DATABASE_URL } from './services.js';
import { summarize, type Summary } from './stats.js';

const ROWS = Number(process.env.SCALE_ROWS ?? 10_000_000);
const PER_USER = 100;
const READS = 3000;
const schema = `tcs_scale_${process.pid}`;
const sql = postgres(DATABASE_URL, { onnotice: () => {}, max: 2 });
const table = sql(`${schema}.messages`);

/** Adds users [from, to) with PER_USER messages each, straight in SQL (ids sort like the store's). */
async function fill(from: number, to: number): Promise<void> {
  for (let start = from; start < to; start += 10_000) {
    const end = Math.min(to, start + 10_000);
    await sql`
      insert into ${table} (user_id, id, role, content, created_at)
      select 'su' || u, lpad(to_hex(u) || lpad(m::text, 4, '0'), 26, '0'), case when m % 2 = 0 then 'user' else 'assistant' end,
             repeat('x', 120), now() - interval '1 second' * (${PER_USER} - m)
      from generate_series(${start}::int, ${end - 1}::int) u, generate_series(1, ${PER_USER}) m`;
    // Their thread rows, as the store's inserts keep them (listThreads, purge and retention walk these).
    await sql`
      insert into ${sql(`${schema}.threads`)} (user_id, thread, messages, created_at, updated_at, last_id)
      select 'su' || u, 'main', ${PER_USER}, now() - interval '1 second' * ${PER_USER}, now(), lpad(to_hex(u) || lpad(${PER_USER}::text, 4, '0'), 26, '0')
      from generate_series(${start}::int, ${end - 1}::int) u`;
    process.stdout.write(`\r  ${(end * PER_USER).toLocaleString('en')} rows`);
  }
  process.stdout.write('\n');
  // What autovacuum would have done by the time a real table is this big (hint bits, visibility map).
  await sql`vacuum analyze ${table}`;
}

/** Reads of random users among the first `users`: few users stay cached, many go to disk (or the OS cache). */
async function reads(store: TieredStore, users: number): Promise<Summary> {
  const samples: number[] = [];
  for (let i = 0; i < READS + 300; i++) {
    const user = `su${Math.floor(Math.random() * users)}`;
    const started = performance.now();
    const history = await store.getHistory(user, { limit: 50 });
    if (i >= 300) samples.push(performance.now() - started);
    if (history.length !== 50) throw new Error(`expected 50 messages of ${user}, got ${history.length}`);
  }
  return summarize(samples);
}

const store = new TieredStore({ logger: false, postgres: new PostgresAdapter({ url: DATABASE_URL, schema }) });
try {
  await store.syncNow(); // migrations
  const [{ server_version: version }] = (await sql`show server_version`) as unknown as [{ server_version: string }];
  console.log(`messages table at scale: ${os.cpus().length} cores, Node ${process.version}, PostgreSQL ${version}`);
  const small = 100;
  await fill(0, small);
  const atSmall = await reads(store, small);
  const started = Date.now();
  await fill(small, ROWS / PER_USER);
  const fillSeconds = (Date.now() - started) / 1000;
  const atLarge = await reads(store, ROWS / PER_USER);
  const warmLarge = await reads(store, small); // the same 100 users as the small table, now among 10M rows
  const [{ size }] = (await sql`select pg_size_pretty(pg_total_relation_size(${`${schema}.messages`})) as size`) as unknown as [{ size: string }];

  // Retention: trim 1,000 users to their newest 50, in the syncer's batches.
  const adapter = new PostgresAdapter({ url: DATABASE_URL, schema });
  const users = Array.from({ length: 1000 }, (_, i) => `su${1000 + i}`);
  const trimStart = performance.now();
  const trimmed = await adapter.enforceRetention({ users, keepLast: 50, batch: 5000 }); // the syncer's default batch
  const trimMs = performance.now() - trimStart;
  await adapter.close();

  const rows = [
    [`${(small * PER_USER).toLocaleString('en')} rows, ${small} users`, atSmall],
    [`${ROWS.toLocaleString('en')} rows, the same ${small} users`, warmLarge],
    [`${ROWS.toLocaleString('en')} rows, any of ${(ROWS / PER_USER).toLocaleString('en')} users`, atLarge],
  ] as const;
  for (const [name, s] of rows) console.log(`  getHistory(limit 50), ${name.padEnd(42)} median ${s.medianUs} us   p99 ${s.p99Us} us`);
  console.log(
    `  same users, 10,000 -> ${ROWS.toLocaleString('en')} rows: ${(warmLarge.medianUs / atSmall.medianUs).toFixed(2)}x the median; table + indexes ${size}, filled in ${fillSeconds.toFixed(0)} s`,
  );
  console.log(`  retention keepLast 50 over 1,000 users: ${trimmed.toLocaleString('en')} rows deleted in ${trimMs.toFixed(0)} ms`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/scale.json',
    JSON.stringify({ rows: ROWS, small: atSmall, sameUsersLarge: warmLarge, large: atLarge, size, fillSeconds, retention: { trimmed, ms: trimMs } }, null, 2),
  );
} finally {
  await store.close();
  await sql`drop schema if exists ${sql(schema)} cascade`;
  await sql.end();
}
