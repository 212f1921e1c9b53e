/** How much each part of the benchmark does: the full run (about a minute or two) or `--quick` (a smoke run). */

export interface LatencyPlan {
  /** Untimed calls per variant before the first round. */
  warmup: number;
  /** Rounds; each runs every variant once, in alternating order (ABBA...), so load drift hits both. */
  rounds: number;
  /** Timed calls per variant per round. */
  block: number;
}

export interface ThroughputPlan {
  concurrency: number;
  rounds: number;
  /** Calls per variant per round, shared by `concurrency` callers. */
  ops: number;
  warmup: number;
}

export interface Plan {
  quick: boolean;
  /** Redis round trips and in-process work. */
  fast: LatencyPlan;
  /** Operations that touch PostgreSQL. */
  pg: LatencyPlan;
  /** Operations that move kilobytes (10k subscribers, 1,000-message reads). */
  heavy: LatencyPlan;
  /** Cold reads: every call reads a user never read before, so this sets how many users are seeded. */
  cold: LatencyPlan;
  throughput: ThroughputPlan;
  /** Write-through throughput (bounded by PostgreSQL commits, so fewer calls per round). */
  throughputDurable: ThroughputPlan;
  hotUsers: number;
  lengthUsers: number;
  subscribers: number;
  lost: { writers: number; appends: number };
  sync: { messages: number; users: number; rowByRowSample: number };
  memory: { messages: number; overflow: number };
}

export const FULL: Plan = {
  quick: false,
  fast: { warmup: 300, rounds: 10, block: 300 },
  pg: { warmup: 100, rounds: 10, block: 150 },
  heavy: { warmup: 20, rounds: 6, block: 40 },
  cold: { warmup: 50, rounds: 10, block: 100 },
  throughput: { concurrency: 100, rounds: 6, ops: 4000, warmup: 1000 },
  throughputDurable: { concurrency: 100, rounds: 6, ops: 1500, warmup: 500 },
  hotUsers: 100,
  lengthUsers: 20,
  subscribers: 10_000,
  lost: { writers: 50, appends: 40 },
  sync: { messages: 100_000, users: 10_000, rowByRowSample: 2000 },
  memory: { messages: 100_000, overflow: 100_000 },
};

export const QUICK: Plan = {
  quick: true,
  fast: { warmup: 20, rounds: 2, block: 40 },
  pg: { warmup: 10, rounds: 2, block: 20 },
  heavy: { warmup: 2, rounds: 2, block: 5 },
  cold: { warmup: 10, rounds: 2, block: 20 },
  throughput: { concurrency: 100, rounds: 2, ops: 300, warmup: 100 },
  throughputDurable: { concurrency: 100, rounds: 2, ops: 200, warmup: 100 },
  hotUsers: 100,
  lengthUsers: 5,
  subscribers: 10_000,
  lost: { writers: 50, appends: 40 },
  sync: { messages: 5000, users: 500, rowByRowSample: 100 },
  memory: { messages: 10_000, overflow: 10_000 },
};

/** Calls one variant of a latency comparison makes in all (warm-up included). */
export function callsPerVariant(plan: LatencyPlan): number {
  return plan.warmup + plan.rounds * plan.block;
}

export const SECTIONS = [
  'reads',
  'writes',
  'messages',
  'threads',
  'export',
  'summaries',
  'encryption',
  'length',
  'concurrency',
  'naive',
  'sync',
  'memory',
] as const;
export type Section = (typeof SECTIONS)[number];

export interface Args {
  plan: Plan;
  only: Set<Section>;
  out: string;
}

/** `--quick`, `--only reads,writes`, `--out path.json`. */
export function parseArgs(argv: readonly string[]): Args {
  let plan = FULL;
  let only = new Set<Section>(SECTIONS);
  let out = 'bench/results/latest.json';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') plan = QUICK;
    else if (arg === '--only') only = sections(argv[++i]);
    else if (arg === '--out') out = argv[++i] ?? out;
    else if (arg === '--help' || arg === '-h') {
      console.log(`usage: npm run bench -- [--quick] [--only ${SECTIONS.join(',')}] [--out file.json]`);
      process.exit(0);
    } else throw new Error(`unknown argument ${String(arg)} (try --help)`);
  }
  return { plan, only, out };
}

function sections(list: string | undefined): Set<Section> {
  const picked = (list ?? '').split(',').filter(Boolean);
  if (picked.length === 0) throw new Error(`--only needs a list of sections: ${SECTIONS.join(',')}`);
  for (const name of picked) {
    if (!(SECTIONS as readonly string[]).includes(name)) throw new Error(`--only: unknown section ${name}; one of ${SECTIONS.join(', ')}`);
  }
  return new Set(picked as Section[]);
}
