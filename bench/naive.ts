import type { Redis } from 'ioredis';
import { userIds, warm, type Ctx } from './context.js';
import { burst, compareLatency } from './harness.js';
import { CONTENT, item, rawId, seedMessages, TTL_MS } from './raw.js';

/** The designs users have today. */
export class Naive {
  constructor(readonly redis: Redis) {}

  /** The original bot: the history is one JSON array, rewritten on every message (keeping the newest `keep`). */
  async jsonAppend(key: string, keep: number): Promise<void> {
    const text = await this.redis.get(key);
    const history = text === null ? [] : (JSON.parse(text) as unknown[]);
    history.push({ id: rawId(), role: 'user', content: CONTENT, createdAt: Date.now() });
    await this.redis.set(key, JSON.stringify(history.length > keep ? history.slice(-keep) : history), 'PX', TTL_MS);
  }

  async jsonRead(key: string, n: number): Promise<unknown[]> {
    const text = await this.redis.get(key);
    return text === null ? [] : (JSON.parse(text) as unknown[]).slice(-n);
  }

  async seedJson(key: string, n: number): Promise<void> {
    const history = Array.from({ length: n }, () => ({ id: rawId(), role: 'user', content: CONTENT, createdAt: Date.now() }));
    await this.redis.set(key, JSON.stringify(history), 'PX', TTL_MS);
  }

  /** LangChain's RedisChatMessageHistory: LPUSH per message, unbounded, no TTL. */
  async listAppend(key: string): Promise<void> {
    await this.redis.lpush(key, item(rawId(), 'user', CONTENT, Date.now()));
  }

  /** ...and every read returns the whole history (LRANGE 0 -1), newest pushed first. */
  async listRead(key: string): Promise<unknown[]> {
    return (await this.redis.lrange(key, 0, -1)).map((s) => JSON.parse(s) as unknown).reverse();
  }
}

const SECTION = 'naive designs users have today (concurrency 1)';

export async function naive(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const store = await svc.store('naive', 'redis+postgres');
  const designs = new Naive(svc.redis);
  const users = userIds('n', plan.lengthUsers);
  const user = (i: number) => users[i % users.length]!;
  await seedMessages(svc.sql, `${svc.schema('naive')}.messages`, users, 50);
  await warm(store, users);
  const json = users.map((u) => svc.key('json', u));
  const list = users.map((u) => svc.key('lc', u));
  for (const key of json) await designs.seedJson(key, 50);
  for (const key of list) await svc.redis.lpush(key, ...Array.from({ length: 1000 }, () => item(rawId(), 'user', CONTENT, Date.now())));

  ctx.progress('naive designs');
  report.latency(
    SECTION,
    'append vs original JSON array (50 messages)',
    await compareLatency(
      [
        { label: 'store write-through', call: (i) => store.addMemory(user(i), 'user', CONTENT) },
        { label: 'GET+parse+push+SET', call: (i) => designs.jsonAppend(json[i % users.length]!, 50) },
      ],
      plan.pg,
    ),
    undefined,
    'the store also writes PostgreSQL; the JSON array is Redis only and loses concurrent writes (below)',
  );
  report.latency(
    SECTION,
    'read vs original JSON array (50 messages)',
    await compareLatency(
      [
        { label: 'store, Redis hit', call: (i) => store.getHistory(user(i)) },
        { label: 'GET + JSON.parse', call: (i) => designs.jsonRead(json[i % users.length]!, 50) },
      ],
      plan.fast,
    ),
  );
  report.latency(
    SECTION,
    'read vs LangChain-style list (1,000 messages)',
    await compareLatency(
      [
        { label: 'store, newest 50', call: (i) => store.getHistory(user(i)) },
        { label: 'LRANGE 0 -1 (unbounded)', call: (i) => designs.listRead(list[i % users.length]!) },
      ],
      plan.heavy,
    ),
    undefined,
    'LangChain-style history never trims: every read returns (and parses) all of it',
  );
  const behind = await svc.store('naivewb', 'redis+postgres', { writeMode: 'write-behind' });
  await seedMessages(svc.sql, `${svc.schema('naivewb')}.messages`, users, 50);
  await warm(behind, users);
  report.latency(
    SECTION,
    'append vs LangChain-style LPUSH (both Redis only)',
    await compareLatency(
      [
        { label: 'store write-behind', call: (i) => behind.addMemory(user(i), 'user', CONTENT) },
        { label: 'LPUSH (no trim, no TTL)', call: (i) => designs.listAppend(list[i % users.length]!) },
      ],
      plan.pg,
    ),
  );
  await Promise.all([store.close(), behind.close()]);
  await lostWrites(ctx, designs);
}

/** `writers` concurrent callers append `appends` messages each to one user; how many survive? */
async function lostWrites(ctx: Ctx, designs: Naive): Promise<void> {
  const { svc, plan, report } = ctx;
  const { writers, appends } = plan.lost;
  const total = writers * appends;
  const store = await svc.store('lost', 'redis+postgres');
  const jsonKey = svc.key('lost', 'json');
  const listKey = svc.key('lost', 'list');
  ctx.progress(`lost writes, ${writers} writers x ${appends}`);
  await burst(() => designs.jsonAppend(jsonKey, Number.MAX_SAFE_INTEGER), 0, total, writers, []);
  await burst(() => designs.listAppend(listKey), 0, total, writers, []);
  await burst(() => store.addMemory('lost', 'user', CONTENT), 0, total, writers, []);
  const json = (await designs.jsonRead(jsonKey, total)).length;
  const listed = await svc.redis.llen(listKey);
  const history = await store.getHistory('lost', { limit: total });
  const distinct = new Set(history.map((m) => m.id)).size;
  const lost = { store: total - distinct, json: total - json, list: total - listed, total, writers, appends };
  report.extra.lostWrites = lost;
  report.add({
    section: 'lost writes under concurrency',
    operation: `${writers} writers x ${appends} appends, one user`,
    ours: { label: 'store', text: `${lost.store} of ${total} lost` },
    baseline: { label: 'GET+parse+push+SET', text: `${lost.json} of ${total} lost` },
    pass: lost.store === 0 && history.length === total,
    note: `LangChain-style LPUSH lost ${lost.list} (atomic, but unbounded); the store's count is read back with getHistory(limit ${total}) from PostgreSQL`,
  });
  await store.close();
}
