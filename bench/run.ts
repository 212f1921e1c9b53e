/**
 * npm run bench [-- --quick] [-- --only reads,writes] : the store against the raw clients and the
 * naive designs, on the real Redis and PostgreSQL of TEST_REDIS_URL / TEST_DATABASE_URL.
 * Prints a table to stdout (progress to stderr) and writes bench/results/latest.json.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs, type Args, type Section } from './config.js';
import { concurrency } from './concurrency.js';
import { exportSection } from './export.js';
import type { Ctx } from './context.js';
import { length } from './length.js';
import { load, machine, type Machine } from './machine.js';
import { memory } from './memory.js';
import { messages } from './messages.js';
import { naive } from './naive.js';
import { Raw, createTables } from './raw.js';
import { reads } from './reads.js';
import { Report } from './report.js';
import { Services } from './services.js';
import { summaries } from './summaries.js';
import { encryption } from './encryption.js';
import { sync } from './sync.js';
import { threads } from './threads.js';
import { writes } from './writes.js';

const RUNS: Record<Section, (ctx: Ctx) => Promise<void>> = {
  reads,
  writes,
  messages,
  threads,
  export: exportSection,
  summaries,
  encryption,
  length,
  concurrency,
  naive,
  sync,
  memory,
};
/** The run gives up (and still cleans up) past this; a full run takes two to three minutes on 2 cores (up to 175 s measured). */
const DEADLINE_MS = 420_000;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const elapsed = () => ((performance.now() - started) / 1000).toFixed(1);
  // A reader that goes away (| head) must not kill the run before it cleans up.
  process.stdout.on('error', () => {});
  const svc = await Services.open();
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${DEADLINE_MS / 1000} s; cleaning up and giving up`);
    void svc.cleanup().finally(() => process.exit(1));
  }, DEADLINE_MS);
  watchdog.unref();
  process.once('SIGINT', () => void svc.cleanup().finally(() => process.exit(130)));
  const report = new Report();
  let info: Machine;
  try {
    info = await machine(svc);
    await measure(svc, args, report, (message) => console.error(`[${elapsed()} s] ${message}`));
  } finally {
    clearTimeout(watchdog);
    await svc.cleanup();
  }
  const loadAtEnd = load();
  const seconds = Number(elapsed());
  report.print(info, [
    `tiered-conversation-store benchmark (${args.plan.quick ? 'quick smoke run: figures are not meaningful' : 'full run'}), ${new Date().toISOString()}`,
    `took ${seconds} s; load average at start ${info.loadAtStart.join(' ')}, at end ${loadAtEnd.join(' ')} (other work on the machine skews figures)`,
    'latency rows: sequential calls, warm-up first, variants alternated in rounds (ABBA); ratio = ours / baseline median (lower is better);',
    'throughput rows: ratio = ours / baseline ops/s (higher is better); p99 is per call under that load;',
    'rounds: lowest-highest ratio of single rounds (a wide spread means the load moved during the run).',
  ]);
  const startedAt = new Date(Date.now() - seconds * 1000).toISOString();
  report.write(args.out, { run: svc.run, startedAt, seconds, plan: args.plan, machine: info, loadAtEnd });
  console.error(`results written to ${args.out}`);
}

/** Runs the sections asked for; one that fails is reported and the others still run. */
async function measure(svc: Services, args: Args, report: Report, progress: (message: string) => void): Promise<void> {
  const rawSchema = svc.schema('raw');
  await createTables(svc.sql, rawSchema);
  const ctx: Ctx = { svc, plan: args.plan, report, raw: new Raw(svc.redis, svc.sql, rawSchema), progress };
  const failures: string[] = [];
  for (const [section, run] of Object.entries(RUNS)) {
    if (!args.only.has(section as Section)) continue;
    await run(ctx).catch((error: unknown) => {
      console.error(`bench: section ${section} failed:`, error);
      failures.push(`${section}: ${(error as Error).message}`);
    });
  }
  if (failures.length > 0) {
    report.extra.failures = failures;
    process.exitCode = 1;
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
