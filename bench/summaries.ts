import type { SummarizeInput } from '../src/index.js';
import type { Ctx } from './context.js';
import { compareLatency } from './harness.js';

const SECTION = 'summaries (Redis + PostgreSQL, write-through, concurrency 1)';

/**
 * addMemory to a thread while a summary of that same thread runs (the hook is held open for the
 * whole measurement), side by side with addMemory on a store with no summarizer: the run must not
 * be on the caller's path.
 */
export async function summaries(ctx: Ctx): Promise<void> {
  const { svc, plan, report } = ctx;
  let release = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let running = 0;
  const hook = async ({ messages }: SummarizeInput) => {
    running++;
    await held;
    return `${messages.length} messages`;
  };
  const summarizing = await svc.store('summaries', 'redis+postgres', { summarize: hook, summarizeAfterTokens: 50, summarizeTimeoutMs: 600_000 });
  const plain = await svc.store('summaries_plain', 'redis+postgres');
  try {
    for (let i = 0; i < 5; i++) await summarizing.addMemory('busy', 'user', `warm-up message ${i} with a few words in it`);
    for (let wait = 0; running === 0 && wait < 100; wait++) await new Promise((resolve) => setTimeout(resolve, 50));
    if (running === 0) throw new Error('summaries: the summary run never started');
    await summarizing.getHistory('busy');
    await plain.getHistory('calm');
    ctx.progress('summaries: addMemory while a summary of the thread runs, and without a summarizer');
    const results = await compareLatency(
      [
        { label: 'addMemory, a summary of the thread running', call: (i) => summarizing.addMemory('busy', 'user', `message ${i}`) },
        { label: 'addMemory, no summarizer', call: (i) => plain.addMemory('calm', 'user', `message ${i}`) },
      ],
      plan.pg,
    );
    report.latency(SECTION, 'addMemory while a summary runs for the same thread', results, undefined, 'target: the same as without a summarizer');
  } finally {
    release();
  }
}
