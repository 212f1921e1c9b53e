import { ErrorCode, TierError } from '../errors.js';

/** Rejects with a `TIER_TIMEOUT` error when `work` takes longer than `ms` (the work itself goes on). */
export function withDeadline<T>(tier: string, ms: number, work: Promise<T>): Promise<T> {
  // One promise and one timer per call (no Promise.race): this wraps every PostgreSQL query.
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new TierError(tier, ErrorCode.TIER_TIMEOUT, `${tier} did not answer within ${ms} ms`));
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
