import { PostgresAdapter } from '../src/index.js';
import { Secrets, silentLogger } from '../src/logger.js';
import { createIdGenerator } from '../src/model/ids.js';
import type { Op } from '../src/model/ops.js';
import type { Ctx } from './context.js';
import { compareLatency } from './harness.js';
import { DATABASE_URL } from './services.js';

const SECTION = 'threads (PostgreSQL, concurrency 1)';
const THREADS = 1000;
const PAGE = 20;
/** Other users with threads of their own, so the index is not the one user's alone. */
const NEIGHBOURS = 200;

/** listThreads of a user with 1,000 threads, a page of 20: the first page and one deep in (keyset cursor). */
export async function threads(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const adapter = new PostgresAdapter({ url: DATABASE_URL, schema: svc.schema('threads') });
  adapter.bind({ role: 'durable', historyLimit: 50, ttlMs: { history: 0, userData: 0, subscribers: 0 }, logger: silentLogger, secrets: new Secrets() });
  try {
    await adapter.connect();
    const id = createIdGenerator();
    const user = 'many_threads';
    const t0 = Date.UTC(2025, 0, 1);
    ctx.progress(`threads: seeding ${THREADS} threads`);
    const ops: Op[] = [];
    for (let i = 0; i < THREADS; i++) {
      for (let k = 0; k < 3; k++) {
        ops.push({ kind: 'append', user, id: id(), thread: `t${i}`, role: 'user', content: `message ${k}`, createdAt: t0 + (i * 3 + k) * 1000 });
      }
      if (i % 10 === 0) ops.push({ kind: 'title', user, id: id(), thread: `t${i}`, title: `Thread ${i}` });
    }
    for (let u = 0; u < NEIGHBOURS; u++) {
      for (let i = 0; i < 10; i++) ops.push({ kind: 'append', user: `neighbour${u}`, id: id(), thread: `t${i}`, role: 'user', content: 'x', createdAt: t0 });
    }
    for (let i = 0; i < ops.length; i += 5000) await adapter.write(ops.slice(i, i + 5000));
    let deep: string | null = null;
    for (let page = 0, cursor: string | null = null; page < THREADS / PAGE / 2; page++) deep = cursor = (await adapter.listThreads(user, PAGE, cursor)).cursor;
    const first = await adapter.listThreads(user, PAGE, null);
    if (first.threads.length !== PAGE || first.threads[0]?.messages !== 3)
      throw new Error(`threads: unexpected first page ${JSON.stringify(first.threads[0])}`);
    ctx.progress('threads: listThreads, first page and page 26');
    const results = await compareLatency(
      [
        { label: 'listThreads, first page of 20', call: () => adapter.listThreads(user, PAGE, null) },
        { label: 'listThreads, page 26 of 50 (cursor)', call: () => adapter.listThreads(user, PAGE, deep) },
      ],
      plan.pg,
    );
    for (const result of results) {
      report.latency(SECTION, `${result.label}, ${THREADS} threads`, [result], undefined, 'target: median under 2 ms');
    }
  } finally {
    await adapter.close();
  }
}
