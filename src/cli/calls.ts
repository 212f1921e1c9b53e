import { withDeadline } from '../routing/deadline.js';
import { ErrorCode, TierError } from '../errors.js';

/** What doctor learns about any tier. */
export interface TierFacts {
  configured: true;
  /** Password masked. */
  url: string;
  /** The variable(s) the URL came from. */
  source: string;
  reachable: boolean;
  /** Why it is not reachable (masked). */
  error: string | null;
  /** Median round trip of a few pings, in milliseconds. */
  latencyMs: number | null;
  /** Checks that failed while the tier answered (masked). */
  problems: string[];
}

export interface NotConfigured {
  configured: false;
}

/**
 * Calls to one tier, each with a deadline. The first decides whether the tier answers; after that
 * a failure is a problem of that check, unless it means the tier stopped answering: then the
 * tier is unreachable and every later call is skipped, so a hung server costs one deadline.
 */
export class Calls {
  constructor(
    private readonly tier: string,
    private readonly timeoutMs: number,
    private readonly facts: TierFacts,
    private readonly describe: (error: unknown) => string,
    private readonly isUnavailable: (error: unknown) => boolean,
  ) {}

  async reach<T>(work: () => Promise<T>): Promise<T | undefined> {
    try {
      const value = await this.#within(work);
      this.facts.reachable = true;
      return value;
    } catch (error) {
      this.#unreachable(error);
      return undefined;
    }
  }

  async run<T>(what: string, work: () => Promise<T>): Promise<T | undefined> {
    if (!this.facts.reachable) return undefined;
    try {
      return await this.#within(work);
    } catch (error) {
      if (isTimeout(error) || this.isUnavailable(error)) this.#unreachable(error);
      else this.facts.problems.push(`${what}: ${this.describe(error)}`);
      return undefined;
    }
  }

  /** Median round trip of `times` calls of `ping`, or null when one failed. */
  async latency(ping: () => Promise<unknown>, times = 5): Promise<number | null> {
    const samples: number[] = [];
    for (let i = 0; i < times; i++) {
      const started = performance.now();
      const answered = await this.run('ping', async () => {
        await ping();
        return true;
      });
      if (answered === undefined) return null;
      samples.push(performance.now() - started);
    }
    return median(samples);
  }

  #within<T>(work: () => Promise<T>): Promise<T> {
    return withDeadline(this.tier, this.timeoutMs, work());
  }

  #unreachable(error: unknown): void {
    this.facts.reachable = false;
    this.facts.error = this.describe(error);
  }
}

export function tierFacts(url: string, source: string): TierFacts {
  return { configured: true, url, source, reachable: false, error: null, latencyMs: null, problems: [] };
}

/**
 * How long a command waits for a connection to close before moving on: an idle connection closes
 * in milliseconds, and a hung one must not hold the report back (the process exits regardless).
 */
export const CLOSE_MS = 250;

/** Resolves when `work` settles or `ms` passes, whichever is first; never rejects. */
export function settleWithin(ms: number, work: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([
    work.then(
      () => {},
      () => {},
    ),
    late,
  ]).finally(() => clearTimeout(timer));
}

function isTimeout(error: unknown): boolean {
  return error instanceof TierError && error.code === ErrorCode.TIER_TIMEOUT;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const value = sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  return Math.round((value ?? 0) * 100) / 100;
}
