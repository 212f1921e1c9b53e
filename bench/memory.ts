import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { userIds, warm, type Ctx } from './context.js';
import { burst } from './harness.js';
import type { MemoryFigures } from './memory-child.js';
import { CONTENT } from './raw.js';

const SECTION = 'MemoryAdapter (RAM tier)';
/** After a full gc, RSS and heap may move a little (allocator); a bound that failed would add ~30 MiB per 100k messages. */
const RSS_SLACK_MIB = 4;
const HEAP_SLACK_MIB = 1;

export async function memory(ctx: Ctx): Promise<void> {
  await redisMemory(ctx);
  const { messages, overflow } = ctx.plan.memory;
  ctx.progress(`MemoryAdapter: ${messages} messages, then ${overflow} past the limit`);
  const figures = await child(messages, overflow);
  ctx.report.extra.memory = figures;
  ctx.report.add({
    section: SECTION,
    operation: `bytes per stored message (${figures.contentChars}-char content)`,
    ours: { label: 'heap delta after gc', text: `${figures.bytesPerMessage} B/msg` },
    baseline: { label: 'adapter estimate', text: `${Math.round(figures.adapterBytes / figures.messages)} B/msg` },
    note: `${figures.messages} messages of ${figures.users} users: heap +${(figures.heapDeltaBytes / 2 ** 20).toFixed(1)} MiB`,
  });
  const { atLimit, tenths } = figures.rssAfterGcMiB;
  const first = tenths[0] ?? atLimit;
  const rssGrowth = Math.max(...tenths) - first;
  const heapGrowth = figures.heapMiB.afterRefusing - figures.heapMiB.atLimit;
  const attempted = figures.attemptedPastLimit;
  const refusedAll = figures.refused === attempted && figures.refusedCodes.STORE_FULL === attempted;
  ctx.report.add({
    section: SECTION,
    operation: `${attempted / 1000}k writes past maxMessages=${messages / 1000}k`,
    ours: { label: 'STORE_FULL', text: `${figures.refused} refused, ${figures.storedAfter} kept` },
    baseline: { label: 'RSS after gc', text: `${atLimit} MiB at limit, ${Math.min(...tenths)}-${Math.max(...tenths)} after` },
    pass: refusedAll && figures.storedAfter === messages && heapGrowth <= HEAP_SLACK_MIB && rssGrowth <= RSS_SLACK_MIB,
    note:
      `PASS when every write past the bound is refused with STORE_FULL, nothing is kept, and after a full gc the heap grows at most ` +
      `${HEAP_SLACK_MIB} MiB (${heapGrowth.toFixed(1)}) and RSS at most ${RSS_SLACK_MIB} MiB (${rssGrowth.toFixed(1)}) from the first tenth on ` +
      `(storing those writes would take ~${Math.round((attempted * figures.bytesPerMessage) / 2 ** 20)} MiB); without forced gc RSS ` +
      `swings up to ${figures.rssMaxWithoutGcMiB} MiB with garbage of the refused calls, which a major gc reclaims`,
  });
}

function child(messages: number, overflow: number): Promise<MemoryFigures> {
  const file = fileURLToPath(new URL('./memory-child.ts', import.meta.url));
  const proc = fork(file, [String(messages), String(overflow)], { execArgv: [...process.execArgv, '--expose-gc'], stdio: 'inherit' });
  const timer = setTimeout(() => proc.kill(), 90_000);
  return new Promise((resolve, reject) => {
    let figures: MemoryFigures | undefined;
    proc.on('message', (message) => (figures = message as MemoryFigures));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (figures) resolve(figures);
      else reject(new Error(`memory child exited with ${code} and no figures`));
    });
  });
}

const REDIS_SECTION = 'Redis memory per hot message';
const PER_USER = 50;

/**
 * What Redis keeps per message of a hot copy: 50 messages of 116 characters for each of many
 * users, written through the store and read once (so each history has its copy), then MEMORY
 * USAGE (every element counted) of each copy's list, and of every key of the store.
 */
async function redisMemory(ctx: Ctx): Promise<void> {
  const { svc, plan } = ctx;
  const users = userIds('mem', plan.quick ? 100 : 1000);
  const store = await svc.store('rmem', 'redis+postgres');
  ctx.progress(`Redis memory: ${users.length} users x ${PER_USER} messages`);
  await burst((i) => store.addMemory(users[i % users.length]!, 'user', CONTENT), 0, users.length * PER_USER, 100, []);
  await warm(store, users);
  const prefix = `${svc.run}:rmem`;
  const usage = async (key: string) => Number((await svc.redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  let lists = 0;
  let items = 0;
  for (const user of users) {
    const key = `${prefix}:{${user}}:h`;
    items += await svc.redis.llen(key);
    lists += await usage(key);
  }
  let all = 0;
  let cursor = '0';
  do {
    const [next, keys] = await svc.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) all += await usage(key);
  } while (cursor !== '0');
  await store.close();
  const expected = users.length * PER_USER;
  if (items !== expected) throw new Error(`the hot copies hold ${items} messages, expected ${expected}`);
  const perMessage = lists / items;
  ctx.report.extra.redisMemory = { users: users.length, perUser: PER_USER, contentChars: CONTENT.length, listBytes: lists, allKeysBytes: all };
  ctx.report.add({
    section: REDIS_SECTION,
    operation: `hot copies, ${users.length} users x ${PER_USER} messages of ${CONTENT.length} characters`,
    ours: { label: 'MEMORY USAGE of the lists', text: `${perMessage.toFixed(1)} B/msg` },
    baseline: { label: 'the content', text: `${CONTENT.length} B` },
    ratio: perMessage / CONTENT.length,
    target: { op: '<=', value: 1.4 },
    note: `every key of the store (lists, meta hashes, ...): ${(all / items).toFixed(1)} B/msg`,
  });
}
