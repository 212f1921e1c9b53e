import { ErrorCode, TierError } from './errors.js';

/** Rejects with a `TIER_TIMEOUT` error when `work` takes longer than `ms`; `onTimeout` may cancel it. */
export function withDeadline<T>(tier: string, ms: number, work: Promise<T>, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new TierError(tier, ErrorCode.TIER_TIMEOUT, `${tier} did not answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
