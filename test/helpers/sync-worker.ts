// A bot process for the multi-process test: writes for overlapping users, syncs in the background,
// and prints one JSON line per acknowledged message and one with its sync totals.
import { PostgresAdapter, RedisAdapter, TieredStore } from '../../src/index.js';

const [worker, count, users] = [Number(process.env.WORKER), Number(process.env.COUNT), Number(process.env.USERS)];
const store = new TieredStore({
  logger: false,
  writeMode: 'write-behind',
  redis: new RedisAdapter({ url: process.env.REDIS_URL!, keyPrefix: process.env.KEY_PREFIX! }),
  postgres: new PostgresAdapter({ url: process.env.DATABASE_URL!, schema: process.env.SCHEMA! }),
});
const moved = { messages: 0, passes: 0 };
store.on('syncComplete', (result) => {
  moved.messages += result.messages;
  if (result.messages > 0) moved.passes++;
});
store.startSync(50);
for (let i = 0; i < count; i++) {
  const user = `mp_${(i + worker) % users}`;
  const message = await store.addMemory(user, 'user', `w${worker}-${i}`, { idempotencyKey: `w${worker}-${i}` });
  process.stdout.write(`${JSON.stringify({ user, id: message.id })}\n`);
  if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
}
await new Promise((resolve) => setTimeout(resolve, 300));
await store.close({ timeoutMs: 10_000 });
process.stdout.write(`${JSON.stringify({ worker, moved })}\n`);
