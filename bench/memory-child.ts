/*
 * Runs in its own process (forked with --expose-gc) so that nothing else the benchmark allocates
 * shows in the heap and RSS figures. Sends one MemoryFigures message to the parent and exits.
 */
import { MemoryAdapter, TieredStore, isStoreError } from '../src/index.js';
import { CONTENT } from './raw.js';

export interface MemoryFigures {
  messages: number;
  users: number;
  contentChars: number;
  heapDeltaBytes: number;
  bytesPerMessage: number;
  /** The adapter's own estimate (what its maxBytes bound counts). */
  adapterBytes: number;
  attemptedPastLimit: number;
  refused: number;
  refusedCodes: Record<string, number>;
  storedAfter: number;
  /** RSS after a full gc at the limit, then after each tenth of the first half of the refused writes. */
  rssAfterGcMiB: { atLimit: number; tenths: number[] };
  /** Highest RSS during as many more refused writes without forced gc (garbage waiting for a major gc). */
  rssMaxWithoutGcMiB: number;
  heapMiB: { atLimit: number; afterRefusing: number };
}

const USERS = 1000;
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

async function main(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const messages = Number(process.argv[2]);
  const overflow = Number(process.argv[3]);
  const memory = new MemoryAdapter({ maxMessages: messages });
  const store = new TieredStore({ memory, logger: false });
  // Contents arrive from the network as flat strings: JSON.parse makes them the same way.
  const content = (i: number) => JSON.parse(JSON.stringify(`${CONTENT} #${i}`)) as string;
  await store.addMemory('warm-up', 'user', 'x');
  await store.deleteUser('warm-up');

  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < messages; i++) await store.addMemory(`u${i % USERS}`, 'user', content(i));
  gc();
  const atLimit = process.memoryUsage();
  const stored = memory.size;

  // Writes past the bound: first with a full gc after each tenth (retention shows as growth),
  // then as many without forced gc (how high the garbage of refused calls lets RSS swing).
  let refused = 0;
  const refusedCodes: Record<string, number> = {};
  const attempt = async (i: number) => {
    try {
      await store.addMemory(`u${i % USERS}`, 'user', content(messages + i));
    } catch (error) {
      const code = isStoreError(error) ? error.code : String(error);
      refusedCodes[code] = (refusedCodes[code] ?? 0) + 1;
      refused++;
    }
  };
  const tenth = Math.max(1, Math.floor(overflow / 10));
  const rssAfterGc: number[] = [];
  for (let i = 0; i < overflow; i++) {
    await attempt(i);
    if ((i + 1) % tenth === 0) {
      gc();
      rssAfterGc.push(mib(process.memoryUsage().rss));
    }
  }
  gc();
  const afterGced = process.memoryUsage();
  let maxRss = afterGced.rss;
  for (let i = 0; i < overflow; i++) {
    await attempt(overflow + i);
    if (i % 1000 === 0) maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }
  gc();
  const after = process.memoryUsage();

  const figures: MemoryFigures = {
    messages: stored.messages,
    users: USERS,
    contentChars: content(0).length,
    heapDeltaBytes: atLimit.heapUsed - before,
    bytesPerMessage: Math.round((atLimit.heapUsed - before) / stored.messages),
    adapterBytes: stored.bytes,
    attemptedPastLimit: 2 * overflow,
    refused,
    refusedCodes,
    storedAfter: memory.size.messages,
    rssAfterGcMiB: { atLimit: mib(atLimit.rss), tenths: rssAfterGc },
    rssMaxWithoutGcMiB: mib(maxRss),
    heapMiB: { atLimit: mib(atLimit.heapUsed), afterRefusing: mib(after.heapUsed) },
  };
  await store.close();
  process.send?.(figures);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
