import { spawn } from 'node:child_process';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';
import { standIn } from './helpers/summaries.js';

// A process writing messages while background runs write summaries, SIGKILLed mid-stream: a fresh
// process ends with a summary whose text is exactly the messages up to the id it covers (in order,
// each once), and every acknowledged message in PostgreSQL once.

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

describe.each(['write-through', 'write-behind'] as const)('%s', (writeMode) => {
  it('SIGKILL while summaries run: the summary is consistent with what it covers, no acknowledged message is lost', async () => {
    const names = isolation(`crash_sum_${writeMode}`);
    const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 2 });
    cleanup.push(async () => {
      await sql.end();
      await cleanupRedis(redisUrl(), names.keyPrefix);
      await cleanupPostgres(databaseUrl(), names.schema);
    });
    const config = { redisUrl: redisUrl(), databaseUrl: databaseUrl(), keyPrefix: names.keyPrefix, schema: names.schema, writeMode };
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/summary-crash-worker.ts'], {
      env: { ...process.env, CRASH_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const acked: string[] = [];
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('ACK ')) acked.push(line.split(' ')[1] as string);
    });
    cleanup.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    // Until a few summaries were written (read by a second store, pending ops laid over), then mid-stream.
    const watcher = new TieredStore({
      logger: false,
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    cleanup.push(() => watcher.close());
    await expect
      .poll(async () => ((await watcher.getContext('u', { thread: 't', maxTokens: 1_000_000 })).summary ?? '').split('|').length, {
        timeout: 60_000,
        interval: 100,
      })
      .toBeGreaterThan(30);
    await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
    child.kill('SIGKILL');
    await exited;
    expect(acked.length).toBeGreaterThan(30);

    const fresh = new TieredStore({
      logger: false,
      summarize: standIn,
      summarizeAfterTokens: 1_000_000,
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    cleanup.push(() => fresh.close());
    await expect.poll(async () => (await fresh.syncNow()).pending, { timeout: 20_000, interval: 200 }).toBe(0);
    const rows = await sql`select id, content from ${sql(`${names.schema}.messages`)} where user_id = 'u' and thread = 't' order by id`;
    const ids = rows.map((r) => r.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of acked) expect(ids).toContain(id);
    const [summary] = await sql`select text, covers, dirty from ${sql(`${names.schema}.summaries`)} where user_id = 'u' and thread = 't'`;
    expect(summary?.dirty).toBe('');
    const covered = rows.filter((r) => (r.id as string) <= (summary?.covers as string)).map((r) => r.content as string);
    expect(ids).toContain(summary?.covers);
    expect(String(summary?.text).split('|')).toEqual(covered);
    // And the next run picks up exactly where it stopped.
    const next = await fresh.summarizeNow('u', { thread: 't' });
    expect(next?.split('|')).toEqual(rows.map((r) => r.content as string));
  }, 120_000);
});
