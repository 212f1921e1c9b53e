import { randomBytes } from 'node:crypto';
import type { Ctx } from './context.js';
import { userIds, warm } from './context.js';
import { compareLatency } from './harness.js';

const SECTION = 'encryption at rest (Redis + PostgreSQL, write-behind, concurrency 1)';

/**
 * The same store with and without encryption at rest, side by side: a write-behind addMemory (the
 * content sealed for Redis's journal and copy) and a hot getHistory of 50 messages (each opened).
 * Target: within 1.15x of the store without encryption.
 */
export async function encryption(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const key = randomBytes(32);
  const sealed = await svc.store('enc', 'redis+postgres', { writeMode: 'write-behind', encryption: { keys: { k: key }, current: 'k' } });
  const plain = await svc.store('enc_plain', 'redis+postgres', { writeMode: 'write-behind' });
  const users = userIds('e', 20);
  const text = 'a message of a typical length, with a few sentences in it about a booking on friday at noon';
  for (const store of [sealed, plain]) {
    for (const user of users) for (let i = 0; i < 50; i++) await store.addMemory(user, i % 2 ? 'assistant' : 'user', `${text} ${i}`);
    await store.syncNow();
    await warm(store, users);
  }
  ctx.progress('encryption: write-behind addMemory and hot getHistory, with and without');
  const writes = await compareLatency(
    [
      { label: 'addMemory, encrypted', call: (i) => sealed.addMemory(`w${i % 20}`, 'user', `${text} ${i}`) },
      { label: 'addMemory, not encrypted', call: (i) => plain.addMemory(`w${i % 20}`, 'user', `${text} ${i}`) },
    ],
    plan.fast,
  );
  report.latency(SECTION, 'write-behind addMemory', writes, { op: '<=', value: 1.15 });
  const reads = await compareLatency(
    [
      { label: 'getHistory (50, hot), encrypted', call: (i) => sealed.getHistory(users[i % users.length] as string) },
      { label: 'getHistory (50, hot), not encrypted', call: (i) => plain.getHistory(users[i % users.length] as string) },
    ],
    plan.fast,
  );
  report.latency(SECTION, 'hot getHistory of 50 messages', reads, { op: '<=', value: 1.15 });
  await Promise.all([sealed.close(), plain.close()]);
}
