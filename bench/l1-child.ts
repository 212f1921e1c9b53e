/**
 * The other process of the cross-process row (forked by bench/reads.ts): a store on the same
 * servers that, told a message id, reads the user's history until that id is in it, and answers
 * with the moment it was seen (performance.timeOrigin + now: one clock for both processes).
 */
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';

const [redisUrl, databaseUrl, keyPrefix, schema, user] = process.argv.slice(2) as [string, string, string, string, string];
const store = new TieredStore({
  logger: false,
  redis: new RedisAdapter({ url: redisUrl, keyPrefix }),
  postgres: new PostgresAdapter({ url: databaseUrl, schema }),
});
const now = () => performance.timeOrigin + performance.now();

process.on('message', async (message: { wait?: string; close?: boolean }) => {
  if (message.close) {
    await store.close();
    process.send?.({ stats: store.stats().l1 }, () => process.exit(0));
    return;
  }
  const id = message.wait as string;
  for (let reads = 1; ; reads++) {
    const history = await store.getHistory(user);
    if (history.at(-1)?.id === id) {
      process.send?.({ seenAt: now(), reads });
      return;
    }
    if (reads > 100_000) {
      process.send?.({ error: `${id} not seen after ${reads} reads` });
      return;
    }
  }
});
await store.getHistory(user);
process.send?.({ ready: true });
