import { afterEach, expect, it } from 'vitest';
import { checkStored, CrashChild, killAllChildren, recover } from './helpers/crash.js';
import { MARGIN_MS } from './helpers/outage.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Crash test (a): a write-behind process, syncing in the background every 20 ms, SIGKILLed at a
// random moment of a busy stream (four times, each a process of its own). A fresh process must
// then move every write the killed one acknowledged to PostgreSQL, exactly once.
const PG_TIMEOUT_MS = 1000;
const ROUNDS = 4;
const used: { keyPrefix: string; schema: string }[] = [];
afterEach(async () => {
  await killAllChildren();
  for (const names of used.splice(0)) {
    await cleanupRedis(redisUrl(), names.keyPrefix).catch(() => {});
    await cleanupPostgres(databaseUrl(), names.schema);
  }
});

it(`write-behind, SIGKILLed mid-stream (${ROUNDS} times): every acknowledged write reaches PostgreSQL once and nothing stays pending`, async () => {
  const results: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const names = isolation(`crash_wb_${round}`);
    used.push(names);
    const tag = `wb${round}`;
    const child = CrashChild.start({
      mode: 'stream',
      redis: { url: redisUrl() },
      databaseUrl: databaseUrl(),
      ...names,
      writeMode: 'write-behind',
      pgTimeoutMs: PG_TIMEOUT_MS,
      writers: 8,
      users: ['wb0', 'wb1', 'wb2'],
      tag,
      count: 0,
      pauseMs: 6,
      startSync: 20,
    });
    await child.acks(300 + Math.floor(Math.random() * 900), 30_000);
    await child.kill();
    const { pending, moved } = await recover({ url: redisUrl() }, databaseUrl(), names, 8000);
    const stored = await checkStored(databaseUrl(), names.schema, child.acked, tag);
    results.push(
      `round ${round}: ${stored.acked} acknowledged, ${stored.missing.length} lost, ${stored.duplicated.length} doubled, ` +
        `pending ${pending} after ${moved.length} recovery passes, slowest call ${child.slowest} ms`,
    );
    expect(stored.missing, results.at(-1)).toEqual([]);
    expect(stored.duplicated, results.at(-1)).toEqual([]);
    expect(pending, results.at(-1)).toBe(0);
    expect(child.failures).toEqual([]);
    expect(child.slowest).toBeLessThan(PG_TIMEOUT_MS + MARGIN_MS);
  }
  console.info(results.join('\n'));
}, 120_000);
