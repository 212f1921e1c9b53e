import type { StoreLogger } from '../logger.js';
import type { Breaker } from '../routing/breaker.js';
import type { DataKeyStore, KeyRing } from './keys.js';

/** A tier whose data keys a pass re-wraps: its breaker (calls fail fast while it is down) and its key store. */
export interface KeyTier {
  tier: Breaker;
  keys: DataKeyStore;
}

const PAGE = 500;
const RETRY_MS = 2000;

/**
 * Re-wraps data keys under the current master key, tier by tier, in pages. Each re-wrap is a
 * conditional update of one key's wrap (a destroy or a concurrent re-wrap wins), so passes may
 * run in several processes at once and be repeated. The data itself is never rewritten: a
 * ciphertext names its data key, and the key record names the master key that wraps it.
 */
export class Rewrapper {
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly tiers: readonly KeyTier[],
    private readonly ring: KeyRing,
    private readonly log: StoreLogger,
  ) {}

  /** Runs a pass (after the one running, if any); resolves when it ends. A tier that failed is retried in the background. */
  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#pass().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        void this.run();
      }
    });
    return this.#running;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
  }

  async #pass(): Promise<void> {
    let failed = false;
    for (const tier of this.tiers) {
      try {
        await this.#tier(tier);
      } catch (error) {
        failed = true;
        this.log.warn(`re-wrapping data keys in ${tier.tier.name} stopped (${(error as Error).message}); retrying in ${RETRY_MS / 1000} s`);
      }
    }
    if (failed && !this.#stopped) {
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => void this.run(), RETRY_MS);
      this.#retry.unref();
    }
  }

  /** Scans until a scan re-wraps nothing (a key made with the old master just before the switch shows up in the next one). */
  async #tier(tier: KeyTier): Promise<void> {
    for (let round = 0; round < 3; round++) if ((await this.#scan(tier)) === 0) return;
  }

  async #scan({ tier, keys }: KeyTier): Promise<number> {
    const master = this.ring.current;
    let cursor: string | null = null;
    let moved = 0;
    let skipped = 0;
    do {
      if (this.#stopped) return 0;
      const page = await tier.call(() => keys.staleDataKeys(master, cursor, PAGE));
      for (const { user, record } of page.keys) {
        let key: Buffer;
        try {
          key = this.ring.unwrap(user, record);
        } catch (error) {
          skipped++;
          this.log.warn(`data key ${record.id} of user ${user} was not re-wrapped: ${(error as Error).message}`);
          continue;
        }
        const to = this.ring.wrap(user, record.id, key);
        if (await tier.call(() => keys.rewrapDataKey(user, record.id, record.wrapped, to))) moved++;
      }
      cursor = page.cursor;
    } while (cursor !== null);
    this.log.info(`re-wrapped ${moved} data keys in ${tier.name} under master key '${master}'${skipped ? `; ${skipped} could not be` : ''}`);
    return moved;
  }
}
