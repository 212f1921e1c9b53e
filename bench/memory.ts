import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Ctx } from './context.js';
import type { MemoryFigures } from './memory-child.js';

const SECTION = 'MemoryAdapter (RAM tier)';
/** After a full gc, RSS and heap may move a little (allocator); a bound that failed would add ~30 MiB per 100k messages. */
const RSS_SLACK_MIB = 4;
const HEAP_SLACK_MIB = 1;

export async function memory(ctx: Ctx): Promise<void> {
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
