import { randomBytes } from 'node:crypto';
import { it, type TestContext } from 'vitest';
import type { AdapterConfig, DeadLetterRecord, StorageAdapter } from '../adapters/contract.js';
import type { CacheAdapter } from '../cache/contract.js';
import { createIdGenerator } from '../model/ids.js';
import { Secrets, silentLogger } from '../logger.js';
import type { AppendOp } from '../model/ops.js';

/** The groups of the contract suite, each switched on by name in {@link ContractOptions.groups}. */
export const CONTRACT_GROUPS = ['durable', 'cache', 'journal'] as const;

/**
 * A group of the contract suite:
 * - `durable`: every {@link StorageAdapter} method, the adapter bound as the system of record;
 * - `cache`: the cache role's copies (misses, fills at a version, invalidation, trimming), bound as a cache;
 * - `journal`: the cache role's pending journal, its index and the sync lease, bound as a cache.
 */
export type ContractGroup = (typeof CONTRACT_GROUPS)[number];

/** The role an adapter is bound in (see `AdapterConfig.role`). */
export type ContractRole = AdapterConfig['role'];

/** What `make` returns for each test: a fresh adapter, not yet bound. */
export interface ContractTarget {
  adapter: StorageAdapter;
  /** Removes what the suite wrote and closes the adapter; without it the suite calls `adapter.close()`. */
  cleanup?: () => Promise<void>;
}

/** Options of {@link runAdapterContract}. */
export interface ContractOptions {
  /**
   * The role that picks the groups when `groups` is not given: `durable` runs the `durable` group,
   * `cache` runs `cache` and `journal`. Also the role {@link ContractContext.withAdapter} binds in
   * by default. @default 'durable', or 'cache' when `groups` has only cache-role groups
   */
  role?: ContractRole;
  /** The groups to run, in any combination; each binds the adapter in the role it checks. @default from `role` */
  groups?: readonly ContractGroup[];
  /** `AdapterConfig.historyLimit`: messages per user a cache keeps. @default 5 */
  historyLimit?: number;
  /**
   * Whether the adapter honours `op.key` (idempotency keys): an append repeating the key of a stored
   * message stores nothing and resolves to that message's id. The store relies on it for
   * re-delivered updates; turn it off only for an adapter that cannot. @default true
   */
  idempotencyKeys?: boolean;
  /**
   * Reads back what `recordDeadLetter` kept for `user`; with it the `durable` group checks each
   * field of a recorded dead letter, without it only that recording resolves.
   */
  deadLetters?: (adapter: StorageAdapter, user: string) => Promise<readonly DeadLetterRecord[]>;
  /**
   * Makes the pending index forget `user` (and uncount its entries) behind the adapter's back, as a
   * crash or an older version could leave it; turns on the `journal` test that `indexJournals` finds
   * such a journal again. For `RedisAdapter`: `HDEL` of the user in `${keyPrefix}:{sync:${shard}}:queue`
   * and `DECRBY` of `${keyPrefix}:{sync:${shard}}:queued` by its count.
   */
  dropFromIndex?: (adapter: CacheAdapter, user: string) => Promise<void>;
  /**
   * Names of tests this adapter is known to fail (a bug found and reported, not fixed yet). They run
   * as `it.fails`: the run stays green while the bug is there and fails once it is fixed, so the
   * name is taken off the list. A name that matches no test of the run is an error.
   */
  knownFailures?: readonly string[];
  /** Your own cases, declared inside the suite's `describe` with the same plumbing ({@link ContractContext}). */
  additionalTests?: (context: ContractContext) => void;
}

/** A test body: the adapter (bound and connected) and vitest's test context (for `skip`, `signal`, ...). */
export type ContractTest<A extends StorageAdapter = StorageAdapter> = (adapter: A, test: TestContext) => Promise<void>;

/** The suite's plumbing, given to each group and to {@link ContractOptions.additionalTests}. */
export interface ContractContext {
  /** The adapter's name as given to `runAdapterContract`. */
  readonly name: string;
  /** The groups this run checks. */
  readonly groups: readonly ContractGroup[];
  /** The options this run was given. */
  readonly options: Readonly<ContractOptions>;
  /** `AdapterConfig.historyLimit` of every binding. */
  readonly historyLimit: number;
  /** The config adapters are bound with in the run's role. */
  readonly config: AdapterConfig;
  /** The config adapters are bound with in `role`. */
  configFor(role: ContractRole): AdapterConfig;
  /**
   * Wraps a test body for `it`: calls `make`, binds the adapter in `role` (default: the run's
   * role), connects it, runs `test` and cleans up, whatever happens. `A` is a cast, not a check.
   */
  withAdapter<A extends StorageAdapter = StorageAdapter>(test: ContractTest<A>, role?: ContractRole): (context: TestContext) => Promise<void>;
  /** Declares a test like vitest's `it`, as `it.fails` when its name is in {@link ContractOptions.knownFailures}. */
  it(name: string, body: (context: TestContext) => Promise<void>): void;
  /** A new op id: time-ordered, each greater than the last. */
  id(): string;
  /** A user id no other test of any run used. */
  user(): string;
  /** An append op of `user` with a new id (or `id`), in thread 'main' (or `thread`). */
  append(user: string, content: string, id?: string, thread?: string): AppendOp;
}

const GROUP_ROLE: Record<ContractGroup, ContractRole> = { durable: 'durable', cache: 'cache', journal: 'cache' };

/** Resolves the groups and the default role of a run from its options (the 0.1 `role` option included). */
export function resolveGroups(options: ContractOptions): { groups: ContractGroup[]; role: ContractRole } {
  for (const group of options.groups ?? []) {
    if (!CONTRACT_GROUPS.includes(group))
      throw new TypeError(`runAdapterContract: unknown group ${JSON.stringify(group)} (one of ${CONTRACT_GROUPS.join(', ')})`);
  }
  if (options.groups) {
    const groups = CONTRACT_GROUPS.filter((group) => options.groups?.includes(group));
    const role = options.role ?? (groups.length > 0 && groups.every((group) => GROUP_ROLE[group] === 'cache') ? 'cache' : 'durable');
    return { groups, role };
  }
  const role = options.role ?? 'durable';
  return { groups: role === 'durable' ? ['durable'] : ['cache', 'journal'], role };
}

/** Builds the plumbing of one run. */
export function createContext(name: string, make: () => Promise<ContractTarget>, options: ContractOptions): ContractContext & { checkKnownFailures(): void } {
  const { groups, role } = resolveGroups(options);
  const historyLimit = options.historyLimit ?? 5;
  const configs = {} as Record<ContractRole, AdapterConfig>;
  for (const r of ['durable', 'cache'] as const) {
    configs[r] = {
      role: r,
      historyLimit,
      ttlMs: { history: 60_000, userData: 60_000, subscribers: 60_000 },
      logger: silentLogger,
      secrets: new Secrets(),
    };
  }
  const id = createIdGenerator();
  const known = new Set(options.knownFailures);
  const declared = new Set<string>();
  const run = randomBytes(3).toString('hex');
  let n = 0;
  return {
    name,
    groups,
    options,
    historyLimit,
    config: configs[role],
    configFor: (r) => configs[r],
    withAdapter:
      <A extends StorageAdapter>(test: ContractTest<A>, bindAs: ContractRole = role) =>
      async (context: TestContext) => {
        const target = await make();
        try {
          target.adapter.bind(configs[bindAs]);
          await target.adapter.connect();
          await test(target.adapter as A, context);
        } finally {
          await (target.cleanup ? target.cleanup() : target.adapter.close());
        }
      },
    it: (name, body) => {
      declared.add(name);
      (known.has(name) ? it.fails : it)(name, body);
    },
    checkKnownFailures: () => {
      const unknown = [...known].filter((name) => !declared.has(name));
      if (unknown.length > 0)
        throw new TypeError(
          `runAdapterContract(${JSON.stringify(name)}): knownFailures names no test of this run: ${unknown.map((n) => JSON.stringify(n)).join(', ')}`,
        );
    },
    id,
    user: () => `contract_${run}_${process.pid}_${n++}`,
    append: (user, content, opId = id(), thread = 'main') => ({ kind: 'append', user, id: opId, thread, role: 'user', content, createdAt: Date.now() }),
  };
}
