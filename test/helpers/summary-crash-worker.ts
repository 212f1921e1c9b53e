// A bot process for the summaries crash test, meant to be SIGKILLed: it appends messages to one
// thread of one user in a loop while background summary runs (the stand-in summariser, a small
// threshold, a hook that takes a little while) write summaries. One line per acknowledged write:
//   ACK <id> <content>
// The configuration comes as JSON in CRASH_CONFIG.
import { PostgresAdapter, RedisAdapter, TieredStore, type SummarizeInput } from '../../src/index.js';
import { standIn } from './summaries.js';

interface Config {
  redisUrl: string;
  databaseUrl: string;
  keyPrefix: string;
  schema: string;
  writeMode: 'write-through' | 'write-behind';
}

const config = JSON.parse(process.env.CRASH_CONFIG ?? '{}') as Config;
const store = new TieredStore({
  logger: false,
  writeMode: config.writeMode,
  redis: new RedisAdapter({ url: config.redisUrl, keyPrefix: config.keyPrefix }),
  postgres: new PostgresAdapter({ url: config.databaseUrl, schema: config.schema }),
  summarizeAfterTokens: 40,
  // A short deadline: a run's lease outlives a SIGKILL by about this plus the tiers' deadlines.
  summarizeTimeoutMs: 1000,
  summarize: async (input: SummarizeInput) => {
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 30));
    return standIn(input);
  },
});

for (let i = 0; ; i++) {
  const message = await store.addMemory('u', 'user', `m${i}`, { thread: 't' });
  process.stdout.write(`ACK ${message.id} m${i}\n`);
}
