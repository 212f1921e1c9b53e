import type { L1Stats } from './cache/l1.js';

/** Counters of one tier since the store started. */
export interface TierStats {
  /** Reads a cache answered from a copy it held. */
  hits: number;
  /** Reads a cache had no copy for (the durable tier answered, then the copy was refilled). */
  misses: number;
  /** Calls that failed: unreachable, timed out or refused. */
  errors: number;
  /** Operations this tier should have taken but a lower tier took (it was down, stale or failed). */
  fallbacks: number;
}

/** Latency of one store method over its last 1024 calls. */
export interface OperationStats {
  count: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

export interface StoreStats {
  tiers: { redis: TierStats; postgres: TierStats; memory: TierStats };
  /** The in-process tier: hits, misses, evictions, bytes held, invalidations, stale-if-error reads. */
  l1: L1Stats;
  operations: Record<string, OperationStats>;
  /** Writes not yet in the durable tier, as this process last saw them. */
  pending: number;
  /** Age of the oldest write waiting for the durable tier (this process's journal, and Redis's as of the last sync). */
  oldestPendingAgeMs: number | null;
  /** Time since the last sync pass finished; null before the first. */
  syncLagMs: number | null;
  deadLetters: number;
}

export type TierName = keyof StoreStats['tiers'];

const WINDOW = 1024;

class Latencies {
  readonly samples = new Float64Array(WINDOW);
  count = 0;
  errors = 0;

  add(ms: number, failed: boolean): void {
    this.samples[this.count % WINDOW] = ms;
    this.count++;
    if (failed) this.errors++;
  }

  summary(): OperationStats {
    const sorted = this.samples.slice(0, Math.min(this.count, WINDOW)).sort();
    const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
    return { count: this.count, errors: this.errors, p50Ms: at(0.5), p99Ms: at(0.99) };
  }
}

/** What `store.stats()` reports, gathered on the way at a cost of a few counter bumps per call. */
export class Stats {
  readonly tiers: StoreStats['tiers'] = { redis: empty(), postgres: empty(), memory: empty() };
  readonly #operations = new Map<string, Latencies>();

  count(tier: string, what: keyof TierStats): void {
    const counters = this.tiers[tier as TierName];
    if (counters) counters[what]++;
  }

  time(operation: string, ms: number, failed: boolean): void {
    const latencies = this.#operations.get(operation) ?? new Latencies();
    this.#operations.set(operation, latencies);
    latencies.add(ms, failed);
  }

  operations(): Record<string, OperationStats> {
    return Object.fromEntries([...this.#operations].map(([name, latencies]) => [name, latencies.summary()]));
  }
}

function empty(): TierStats {
  return { hits: 0, misses: 0, errors: 0, fallbacks: 0 };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
