import { callsPerVariant } from './config.js';
import { expectHot, userIds, warm, type Ctx } from './context.js';
import { compareLatency } from './harness.js';
import { CONTENT, seedMessages } from './raw.js';

const SECTION = 'messages by id and drafts (concurrency 1)';
const HISTORY = 50;

/**
 * updateMessage and deleteMessage on a hot history of 50 against addMemory on the same store
 * (write-through: Redis and PostgreSQL), and how many writes a draft makes when update() is called
 * 100 times a second.
 */
export async function messages(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  const users = userIds('msg', plan.hotUsers);
  const user = (i: number) => users[i % users.length]!;
  const store = await svc.store('msg', 'redis+postgres');
  await seedMessages(svc.sql, `${svc.schema('msg')}.messages`, users, HISTORY);
  // Messages for deleteMessage to take, one per call, newest last so the hot copy stays complete.
  const perUser = Math.ceil(callsPerVariant(plan.pg) / users.length) + 1;
  const doomed = new Map<string, string[]>();
  for (const u of users) {
    const ids: string[] = [];
    for (let k = 0; k < perUser; k++) ids.push((await store.addMemory(u, 'assistant', CONTENT)).id);
    doomed.set(u, ids);
  }
  await warm(store, users);
  await expectHot(ctx, 'msg', users, HISTORY);
  const target = new Map<string, string>();
  for (const u of users) target.set(u, (await store.getHistory(u, { limit: 10 }))[0]!.id);

  ctx.progress('updateMessage vs addMemory, hot history of 50');
  report.latency(
    SECTION,
    'updateMessage, hot history of 50, write-through',
    await compareLatency(
      [
        { label: 'updateMessage', call: (i) => store.updateMessage(user(i), target.get(user(i))!, { content: `${CONTENT} ${i}` }) },
        { label: 'addMemory', call: (i) => store.addMemory(user(i), 'user', CONTENT) },
      ],
      plan.pg,
    ),
    { op: '<=', value: 1.5 },
    'ratio against addMemory on the same store: finds the message (Redis copy and journal, one round trip), then writes Redis and PostgreSQL in parallel',
  );

  ctx.progress('deleteMessage vs addMemory, hot history of 50');
  report.latency(
    SECTION,
    'deleteMessage, hot history of 50, write-through',
    await compareLatency(
      [
        { label: 'deleteMessage', call: (i) => store.deleteMessage(user(i), doomed.get(user(i))!.pop()!) },
        { label: 'addMemory', call: (i) => store.addMemory(user(i), 'user', CONTENT) },
      ],
      plan.pg,
    ),
    { op: '<=', value: 1.5 },
  );

  // A draft fed 100 updates a second for 5 s: the scripts this store sends, over the whole stream
  // (first update to the flush after the last one).
  ctx.progress('draft.update at 100 calls per second');
  const evals = svc.countScripts(store);
  const draft = await store.startDraft(user(0), 'assistant');
  const before = evals();
  const started = performance.now();
  let text = '';
  for (let k = 0; k < 500; k++) {
    text += 'word ';
    draft.update(text);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const updatesPerSecond = 500 / ((performance.now() - started) / 1000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const writes = evals() - before;
  const seconds = (performance.now() - started) / 1000;
  await draft.finish();
  const perSecond = writes / seconds;
  report.add({
    section: SECTION,
    operation: 'draft.update, 100 calls per second',
    ours: { label: 'store', text: `${writes} writes in ${seconds.toFixed(2)} s = ${perSecond.toFixed(1)}/s for ${Math.round(updatesPerSecond)} updates/s` },
    ratio: perSecond,
    target: { op: '<=', value: 4 },
    note: 'ratio = Redis scripts this store sent per second over the stream (its writes; other clients of the server are not counted)',
  });
  await store.close();
}
