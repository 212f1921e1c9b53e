// A bot process for the L1 tests: one store, driven by JSON commands on stdin, one JSON reply per
// command on stdout ({ n, ok, value } or { n, error }). See test/helpers/l1-process.ts.
import { createInterface } from 'node:readline';
import { PostgresAdapter, RedisAdapter, TieredStore, type WriteMode } from '../../src/index.js';

const env = process.env;
const store = new TieredStore({
  logger: false,
  probeIntervalMs: 100,
  writeMode: (env.WRITE_MODE as WriteMode | undefined) ?? 'write-through',
  ...(env.L1 === 'off' ? { l1: false as const } : {}),
  redis: new RedisAdapter({ url: env.REDIS_URL!, keyPrefix: env.KEY_PREFIX!, timeoutMs: 500 }),
  postgres: new PostgresAdapter({ url: env.DATABASE_URL!, schema: env.SCHEMA!, timeoutMs: 1000, connectTimeoutMs: 1000 }),
});

type Command = { n: number; op: string; user?: string; text?: string; id?: string; limit?: number };

async function run(c: Command): Promise<unknown> {
  const user = c.user as string;
  switch (c.op) {
    case 'add':
      return (await store.addMemory(user, 'user', c.text as string)).id;
    case 'read':
      return (await store.getHistory(user, c.limit === undefined ? {} : { limit: c.limit })).map((m) => `${m.id}:${m.content}`);
    case 'edit':
      return (await store.updateMessage(user, c.id as string, { content: c.text as string }))?.id ?? null;
    case 'delete':
      return store.deleteMessage(user, c.id as string);
    case 'truncate':
      return store.truncateAfter(user, c.id as string);
    case 'clear':
      return store.clearHistory(user);
    case 'phone':
      return store.setUserPhone(user, c.text ?? null);
    case 'getPhone':
      return store.getUserPhone(user);
    case 'draft': {
      const draft = await store.startDraft(user, 'assistant');
      draft.update(c.text as string);
      return draft.finish(c.text as string).then((m) => m.id);
    }
    case 'health':
      return store.health();
    case 'stats':
      return store.stats();
    case 'close':
      await store.close();
      setImmediate(() => process.exit(0));
      return null;
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line) as Command;
  run(c).then(
    (value) => process.stdout.write(`${JSON.stringify({ n: c.n, ok: true, value: value ?? null })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ n: c.n, error: `${(error as { code?: string }).code ?? ''} ${error.message}` })}\n`),
  );
});
process.stdout.write(`${JSON.stringify({ n: 0, ok: true, value: 'ready' })}\n`);
