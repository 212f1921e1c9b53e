import { describe, it } from 'vitest';
import { cacheTests } from './testing/cache.js';
import { createContext, type ContractGroup, type ContractOptions, type ContractTarget } from './testing/context.js';
import { durableTests } from './testing/durable.js';
import { journalTests } from './testing/journal.js';

export {
  CONTRACT_GROUPS,
  type ContractContext,
  type ContractGroup,
  type ContractOptions,
  type ContractRole,
  type ContractTarget,
  type ContractTest,
} from './testing/context.js';
export type { AdapterConfig, CacheMiss, DeadLetterRecord, HistoryRead, RetentionRule, StorageAdapter, UserRecord, WriteOutcome } from './adapters/contract.js';
export type { CacheAdapter, JournalEntry } from './cache/contract.js';
export type { Op } from './model/ops.js';

const GROUPS: Record<ContractGroup, typeof durableTests> = { durable: durableTests, cache: cacheTests, journal: journalTests };

/**
 * The adapter contract as a vitest suite: run it against your own adapter to check it keeps the
 * rules the store relies on. Call it at the top level of a test file (it declares a `describe`).
 *
 * - `durable` group: every `StorageAdapter` method (idempotent, order-independent ops; idempotency
 *   keys; floors; last writer wins; erasure; bind once; ping, reset, close; the optional
 *   `enforceRetention`, `recordDeadLetter`, `describe`, `secrets` when present).
 * - `cache` group: a cache never serves an incomplete copy (misses, fills at a version, invalidation).
 * - `journal` group: the pending journal, its index and the sync lease.
 *
 * `make` is called once per test and must give a fresh, unbound adapter over a namespace (key
 * prefix, schema) that only this run writes to: the journal tests count what is pending there.
 *
 * @example
 * runAdapterContract('MyAdapter', async () => ({ adapter: new MyAdapter() }));
 * runAdapterContract('MyCache', async () => ({ adapter: new MyCache() }), {
 *   groups: ['cache', 'journal'],
 *   additionalTests: ({ it, withAdapter, user }) => it('keeps my extra rule', withAdapter(async (cache) => { ... })),
 * });
 */
export function runAdapterContract(name: string, make: () => Promise<ContractTarget>, options: ContractOptions = {}): void {
  const context = createContext(name, make, options);
  describe(`${name} keeps the adapter contract`, () => {
    for (const group of context.groups) describe(group, () => GROUPS[group](context));
    if (options.additionalTests) describe('additional tests', () => options.additionalTests?.(context));
    // Checked when run, once every group has declared its tests.
    if (options.knownFailures?.length) it('names only tests of this run in knownFailures', () => context.checkKnownFailures());
  });
}
