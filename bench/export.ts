import { PostgresAdapter } from '../src/index.js';
import { Secrets, silentLogger } from '../src/logger.js';
import { createIdGenerator } from '../src/model/ids.js';
import type { Op } from '../src/model/ops.js';
import type { Ctx } from './context.js';
import { compareLatency } from './harness.js';
import { DATABASE_URL } from './services.js';

const SECTION = 'export (Redis + PostgreSQL, concurrency 1)';
const MESSAGES = 10_000;
const THREADS = 4;
/** Other users, so the user's rows are not the whole table. */
const NEIGHBOURS = 100;

/** exportUser of a user with 10,000 messages in 4 threads (a title, a phone, a booking): target median under 200 ms. */
export async function exportSection(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const store = await svc.store('export', 'redis+postgres');
  // Rows written straight into PostgreSQL in batches (the store's schema, migrated by now).
  const adapter = new PostgresAdapter({ url: DATABASE_URL, schema: svc.schema('export') });
  adapter.bind({ role: 'durable', historyLimit: 50, ttlMs: { history: 0, userData: 0, subscribers: 0 }, logger: silentLogger, secrets: new Secrets() });
  try {
    await adapter.connect();
    const id = createIdGenerator();
    const user = 'exported';
    const t0 = Date.UTC(2025, 0, 1);
    ctx.progress(`export: seeding ${MESSAGES} messages`);
    const ops: Op[] = [];
    for (let i = 0; i < MESSAGES; i++) {
      const content = `message ${i} `.padEnd(200, 'x');
      ops.push({ kind: 'append', user, id: id(), thread: `t${i % THREADS}`, role: i % 2 ? 'assistant' : 'user', content, createdAt: t0 + i * 1000 });
    }
    for (let u = 0; u < NEIGHBOURS; u++) {
      for (let i = 0; i < 20; i++) ops.push({ kind: 'append', user: `neighbour${u}`, id: id(), thread: 'main', role: 'user', content: 'x', createdAt: t0 });
    }
    ops.push({ kind: 'title', user, id: id(), thread: 't0', title: 'The first thread' });
    ops.push({ kind: 'phone', user, id: id(), phone: '+15550100' });
    ops.push({ kind: 'booking', user, id: id(), booking: { room: 12 } });
    for (let i = 0; i < ops.length; i += 5000) await adapter.write(ops.slice(i, i + 5000));
    const first = await store.exportUser(user);
    const total = first.threads.reduce((n, t) => n + t.messages.length, 0);
    if (total !== MESSAGES || first.threads.length !== THREADS)
      throw new Error(`export: unexpected export of ${total} messages in ${first.threads.length} threads`);
    ctx.progress('export: exportUser');
    const results = await compareLatency([{ label: 'exportUser', call: () => store.exportUser(user) }], {
      ...plan.heavy,
      block: Math.max(5, Math.round(plan.heavy.block / 4)),
    });
    for (const result of results) {
      report.latency(
        SECTION,
        `${result.label}, ${MESSAGES.toLocaleString('en-US')} messages in ${THREADS} threads`,
        [result],
        undefined,
        'target: median under 200 ms',
      );
    }
  } finally {
    await adapter.close();
  }
}
