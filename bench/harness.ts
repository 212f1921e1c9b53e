import { performance } from 'node:perf_hooks';
import type { LatencyPlan, ThroughputPlan } from './config.js';
import { median, round, summarize, type Summary } from './stats.js';

/** One call of a variant; `i` counts the variant's calls from 0 (warm-up included), to pick users or rows. */
export type Call = (i: number) => Promise<unknown>;

export interface Variant {
  label: string;
  call: Call;
}

export interface LatencyResult {
  label: string;
  summary: Summary;
  /** Median of each round, to show how much the load drifted during the run. */
  roundMediansUs: number[];
}

/**
 * Sequential calls (concurrency 1). Every variant is warmed up, then rounds run each variant's
 * block in alternating order (A B, B A, ...), so drift in the machine's load hits all sides alike.
 */
export async function compareLatency(variants: readonly Variant[], plan: LatencyPlan): Promise<LatencyResult[]> {
  const next = variants.map(() => 0);
  const samples = variants.map(() => [] as number[]);
  const rounds = variants.map(() => [] as number[]);
  for (let w = 0; w < plan.warmup; w++) {
    for (const [k, v] of variants.entries()) await v.call(next[k]!++);
  }
  for (let r = 0; r < plan.rounds; r++) {
    for (const k of order(variants.length, r)) {
      const v = variants[k]!;
      const block: number[] = [];
      for (let b = 0; b < plan.block; b++) {
        const i = next[k]!++;
        const start = performance.now();
        await v.call(i);
        block.push(performance.now() - start);
      }
      samples[k]!.push(...block);
      rounds[k]!.push(round(median(block) * 1000, 1));
    }
  }
  return variants.map((v, k) => ({ label: v.label, summary: summarize(samples[k]!), roundMediansUs: rounds[k]! }));
}

export interface ThroughputResult {
  label: string;
  /** Median over rounds of calls per second. */
  opsPerSec: number;
  roundOpsPerSec: number[];
  /** Latency of single calls under that load. */
  summary: Summary;
}

/** `concurrency` callers share `ops` calls per round; variants alternate per round like compareLatency. */
export async function compareThroughput(variants: readonly Variant[], plan: ThroughputPlan): Promise<ThroughputResult[]> {
  const next = variants.map(() => 0);
  const samples = variants.map(() => [] as number[]);
  const rates = variants.map(() => [] as number[]);
  for (const [k, v] of variants.entries()) {
    await burst(v.call, next[k]!, plan.warmup, plan.concurrency, []);
    next[k]! += plan.warmup;
  }
  for (let r = 0; r < plan.rounds; r++) {
    for (const k of order(variants.length, r)) {
      const start = performance.now();
      await burst(variants[k]!.call, next[k]!, plan.ops, plan.concurrency, samples[k]!);
      rates[k]!.push(Math.round(plan.ops / ((performance.now() - start) / 1000)));
      next[k]! += plan.ops;
    }
  }
  return variants.map((v, k) => ({
    label: v.label,
    opsPerSec: Math.round(median(rates[k]!)),
    roundOpsPerSec: rates[k]!,
    summary: summarize(samples[k]!),
  }));
}

/** `count` calls numbered from `first`, by `concurrency` callers each awaiting its call before the next. */
export async function burst(call: Call, first: number, count: number, concurrency: number, latencies: number[]): Promise<void> {
  let issued = 0;
  const caller = async () => {
    while (issued < count) {
      const i = first + issued++;
      const start = performance.now();
      await call(i);
      latencies.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, caller));
}

/** Round r's order of n variants: forwards on even rounds, backwards on odd ones. */
function order(n: number, r: number): number[] {
  const forwards = Array.from({ length: n }, (_, k) => k);
  return r % 2 === 0 ? forwards : forwards.reverse();
}
