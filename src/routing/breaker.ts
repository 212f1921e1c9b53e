import type { StorageAdapter } from '../adapters/contract.js';
import { withDeadline } from './deadline.js';
import { EncryptionError, ErrorCode, TierError } from '../errors.js';
import type { Logger } from '../types.js';
import type { Secrets } from '../logger.js';

/** The first probe after a tier is marked down comes this soon, then one every `probeIntervalMs`. */
const FIRST_PROBE_MS = 100;

export interface BreakerHooks {
  probeIntervalMs: number;
  logger: Logger;
  secrets: Secrets;
  /** Runs after a probe succeeds and before the tier is used again (invalidate stale copies, ...). */
  recover(tier: Breaker): Promise<void>;
  onDown(tier: Breaker, error: Error): void;
  /** Every failed call, outage or not (for stats). */
  onError(tier: Breaker): void;
  onUp(tier: Breaker, downForMs: number): void;
}

/**
 * An adapter behind a breaker. A failure that means "unreachable" (refused, reset, timed out)
 * marks the tier down: calls then fail at once without touching it, and a background probe takes
 * it back up once it answers and `recover` has run. Other failures pass through unchanged.
 */
export class Breaker<A extends StorageAdapter = StorageAdapter> {
  #down = false;
  #downSince = 0;
  #lastError: Error | undefined;
  #probe: NodeJS.Timeout | undefined;
  #probing = false;
  #stopped = false;

  constructor(
    readonly adapter: A,
    private readonly hooks: BreakerHooks,
  ) {}

  get name(): string {
    return this.adapter.name;
  }

  get up(): boolean {
    return !this.#down;
  }

  /**
   * Runs `fn` against the adapter. With `deadline` (epoch ms), gives up when it passes: the call
   * goes on in the background and its own deadline decides whether the tier is down.
   */
  async call<T>(fn: (adapter: A) => Promise<T>, deadline?: number): Promise<T> {
    if (this.#down) throw this.#unavailable();
    const left = deadline === undefined ? Infinity : deadline - Date.now();
    // The adapter's own deadline comes first in the usual case: no second timer on the hot path.
    if (left >= this.adapter.timeoutMs) {
      try {
        return await fn(this.adapter);
      } catch (error) {
        throw this.#fail(error);
      }
    }
    const work = (async () => {
      try {
        return await fn(this.adapter);
      } catch (error) {
        throw this.#fail(error);
      }
    })();
    work.catch(() => {});
    return withDeadline(this.name, Math.max(0, left), work);
  }

  /** Connects once at start-up; a tier that cannot is marked down and probed, not an error. */
  async start(): Promise<void> {
    try {
      await this.adapter.connect();
    } catch (error) {
      this.#fail(error, true);
    }
  }

  #fail(error: unknown, always = false): Error {
    this.hooks.onError(this);
    const masked = error instanceof Error ? this.hooks.secrets.maskError(error) : new Error(String(error));
    // A coded error of the tier's own (encryption at rest: a value that does not open) reaches the caller as it is.
    if (!always && !this.adapter.isUnavailable(error))
      return error instanceof TierError || error instanceof EncryptionError ? error : wrapRejected(this.name, masked);
    if (isTimeout(error)) void this.adapter.reset().catch(() => {});
    this.markDown(masked);
    return new TierError(this.name, isTimeout(error) ? ErrorCode.TIER_TIMEOUT : ErrorCode.STORE_UNAVAILABLE, `${this.name}: ${masked.message}`, {
      cause: masked,
    });
  }

  markDown(error: Error): void {
    this.#lastError = error;
    if (this.#down || this.#stopped) return;
    this.#down = true;
    this.#downSince = Date.now();
    this.hooks.logger.warn(`${this.name} is down (${error.message}); probing every ${this.hooks.probeIntervalMs} ms`);
    this.hooks.onDown(this, error);
    this.#probe = setInterval(() => void this.probe(), this.hooks.probeIntervalMs);
    this.#probe.unref();
    // A blip (one timed-out call) is over by then: what missed this tier while it was down (other
    // processes may read its stale copies) is repaired in a fraction of the interval.
    setTimeout(() => void this.probe(), Math.min(FIRST_PROBE_MS, this.hooks.probeIntervalMs)).unref();
  }

  /** One probe: connect, ping, recover, then up. Resolves true when the tier is up. */
  async probe(): Promise<boolean> {
    if (!this.#down) return true;
    if (this.#probing || this.#stopped) return false;
    this.#probing = true;
    try {
      await this.adapter.connect();
      await this.adapter.ping();
      await this.hooks.recover(this);
      this.#markUp();
      return true;
    } catch (error) {
      this.#lastError = error instanceof Error ? this.hooks.secrets.maskError(error) : new Error(String(error));
      this.hooks.logger.debug(`${this.name} probe failed: ${this.#lastError.message}`);
      return false;
    } finally {
      this.#probing = false;
    }
  }

  #markUp(): void {
    clearInterval(this.#probe);
    this.#probe = undefined;
    if (!this.#down || this.#stopped) return;
    this.#down = false;
    const downForMs = Date.now() - this.#downSince;
    this.hooks.logger.warn(`${this.name} is up again after ${(downForMs / 1000).toFixed(1)} s`);
    this.hooks.onUp(this, downForMs);
  }

  #unavailable(): TierError {
    const reason = this.#lastError ? `: ${this.#lastError.message}` : '';
    return new TierError(this.name, ErrorCode.STORE_UNAVAILABLE, `${this.name} is down${reason}`, { cause: this.#lastError });
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#probe);
    this.#probe = undefined;
  }
}

/** True for an error that a tier being unreachable or slow produced. */
export function isTierUnavailable(error: unknown): error is TierError {
  return error instanceof TierError && error.code !== ErrorCode.TIER_ERROR;
}

function isTimeout(error: unknown): boolean {
  return error instanceof TierError && error.code === ErrorCode.TIER_TIMEOUT;
}

function wrapRejected(tier: string, error: Error): TierError {
  return new TierError(tier, ErrorCode.TIER_ERROR, `${tier} rejected the request: ${error.message}`, { cause: error });
}
