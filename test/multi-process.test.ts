import { spawn } from 'node:child_process';
import postgres from 'postgres';
import { afterAll, expect, it } from 'vitest';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Issue 6: several real bot processes, overlapping users, all running startSync on one Redis and PostgreSQL.
const names = isolation('multi_process');
const sql = postgres(databaseUrl(), { onnotice: () => {} });
afterAll(async () => {
  await sql.end();
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

const PROCESSES = 4;
const PER_PROCESS = 400;

function runWorker(worker: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/sync-worker.ts'], {
      env: {
        ...process.env,
        WORKER: String(worker),
        COUNT: String(PER_PROCESS),
        USERS: '5',
        REDIS_URL: redisUrl(),
        DATABASE_URL: databaseUrl(),
        KEY_PREFIX: names.keyPrefix,
        SCHEMA: names.schema,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out.trim().split('\n')) : reject(new Error(`worker ${worker} exited with ${code}`))));
  });
}

it(`${PROCESSES} processes writing for overlapping users and syncing at once: nothing lost, nothing doubled, one order, work shared`, async () => {
  // The schema exists before the workers race to migrate it... and they must also cope if not: start them together.
  const outputs = await Promise.all(Array.from({ length: PROCESSES }, (_, w) => runWorker(w)));
  const lines = outputs.flat().map((line) => JSON.parse(line) as { user?: string; id?: string; moved?: { messages: number; passes: number } });
  const acked = lines.filter((l) => l.id !== undefined) as { user: string; id: string }[];
  const moved = lines.filter((l) => l.moved !== undefined).map((l) => l.moved!);
  expect(acked).toHaveLength(PROCESSES * PER_PROCESS);

  const table = sql(`${names.schema}.messages`);
  const stored = await sql`select user_id, id from ${table} where user_id like 'mp_%' order by user_id, id`;
  expect(stored.map((r) => r.id).sort()).toEqual(acked.map((a) => a.id).sort());
  const [dup] = await sql`select count(*) - count(distinct id) as d from ${table}`;
  expect(Number(dup?.d)).toBe(0);

  const reader = makeStore('write-through', names, { historyLimit: 2000 });
  for (let u = 0; u < 5; u++) {
    const user = `mp_${u}`;
    const expected = acked
      .filter((a) => a.user === user)
      .map((a) => a.id)
      .sort();
    expect((await reader.getHistory(user, { limit: 2000 })).map((m) => m.id)).toEqual(expected);
  }
  await reader.close();

  const total = moved.reduce((sum, m) => sum + m.messages, 0);
  console.info(`multi-process sync: ${acked.length} written, ${total} moved in all (${moved.map((m) => `${m.messages}/${m.passes} passes`).join(', ')})`);
  expect(total).toBeGreaterThanOrEqual(acked.length);
  expect(total).toBeLessThan(acked.length * 1.5); // shared, not repeated by every process
}, 120_000);
