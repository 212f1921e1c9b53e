/** Latency summaries in microseconds. */
export interface Summary {
  n: number;
  medianUs: number;
  p99Us: number;
  meanUs: number;
  minUs: number;
}

/** Summarises durations given in milliseconds. */
export function summarize(samplesMs: readonly number[]): Summary {
  if (samplesMs.length === 0) return { n: 0, medianUs: NaN, p99Us: NaN, meanUs: NaN, minUs: NaN };
  const sorted = Float64Array.from(samplesMs).sort();
  const us = (ms: number) => Math.round(ms * 10_000) / 10;
  let sum = 0;
  for (const x of sorted) sum += x;
  return {
    n: sorted.length,
    medianUs: us(quantile(sorted, 0.5)),
    p99Us: us(quantile(sorted, 0.99)),
    meanUs: us(sum / sorted.length),
    minUs: us(sorted[0] as number),
  };
}

/** Linear interpolation between the closest ranks of a sorted array. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(Float64Array.from(values).sort(), 0.5);
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
