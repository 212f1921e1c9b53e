import { RedisAdapter } from '../adapters/redis.js';
import type { EnvTarget } from '../env.js';
import { maskUrl } from '../logger.js';
import { Calls, CLOSE_MS, settleWithin, tierFacts, type TierFacts } from './calls.js';
import type { Output } from './output.js';

export interface RedisFacts extends TierFacts {
  /** `redis_version` from INFO. */
  version: string | null;
  /** `redis_mode` from INFO: standalone, cluster or sentinel. */
  mode: string | null;
  cluster: boolean;
  /** Writes in the pending journal, waiting for PostgreSQL. */
  pending: number | null;
  /** Users with keys under the prefix (their `:m` key), counted with SCAN. */
  hotUsers: number | null;
  /** False when the SCAN stopped at its time budget: `hotUsers` is then a lower bound. */
  hotUsersComplete: boolean;
  /**
   * Whether the in-process tier (L1) can stay coherent: 'works' when a key written under the
   * prefix was reported on a tracking connection in time (on a Cluster: by the node holding it), else 'failed'.
   */
  invalidation: 'works' | 'failed' | null;
  /** How long that report took to arrive, in ms. */
  invalidationMs: number | null;
  warnings: string[];
}

export interface CheckOptions {
  keyPrefix: string;
  timeoutMs: number;
  output: Output;
}

// Policies that may evict keys without a TTL, pending journals included.
const EVICTS_JOURNALS = /^allkeys-/;

export async function checkRedis(target: EnvTarget, options: CheckOptions): Promise<RedisFacts> {
  const facts: RedisFacts = {
    ...tierFacts(maskUrl(target.url), target.source),
    version: null,
    mode: null,
    cluster: false,
    pending: null,
    hotUsers: null,
    hotUsersComplete: false,
    invalidation: null,
    invalidationMs: null,
    warnings: [],
  };
  let adapter: RedisAdapter;
  try {
    adapter = new RedisAdapter({ url: target.url, keyPrefix: options.keyPrefix, timeoutMs: options.timeoutMs, connectTimeoutMs: options.timeoutMs });
  } catch (error) {
    facts.error = options.output.describe(error);
    return facts;
  }
  const calls = new Calls(
    'redis',
    options.timeoutMs,
    facts,
    (e) => options.output.describe(e),
    (e) => adapter.isUnavailable(e),
  );
  try {
    await calls.reach(() => adapter.connect());
    facts.latencyMs = await calls.latency(() => adapter.ping());
    const info = await calls.run('INFO', () => adapter.client.info());
    if (info !== undefined) describeServer(facts, info, adapter.cluster);
    facts.pending = (await calls.run('pending journal', () => adapter.pendingCount())) ?? null;
    await countHotUsers(facts, adapter, calls, options);
    await checkInvalidation(facts, facts.mode === 'cluster' ? clusterOf(target, options) : adapter, options);
  } finally {
    await settleWithin(CLOSE_MS, adapter.close());
  }
  return facts;
}

function describeServer(facts: RedisFacts, info: string, clusterClient: boolean): void {
  facts.version = field(info, 'redis_version');
  facts.mode = field(info, 'redis_mode');
  facts.cluster = clusterClient || facts.mode === 'cluster';
  const policy = field(info, 'maxmemory_policy');
  if (policy && EVICTS_JOURNALS.test(policy)) {
    facts.warnings.push(`maxmemory-policy ${policy} may evict pending journals (keys without a TTL): use noeviction or volatile-lru`);
  }
}

/** SCAN (never KEYS) over `<prefix>:{*}:m`, within a time budget of five deadlines. */
async function countHotUsers(facts: RedisFacts, adapter: RedisAdapter, calls: Calls, options: CheckOptions): Promise<void> {
  const budgetEnds = Date.now() + options.timeoutMs * 5;
  const pattern = `${adapter.keyPrefix}:{*}:m`;
  let cursor = '0';
  let found = 0;
  do {
    const reply = await calls.run('SCAN', () => adapter.client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
    if (!reply) return;
    cursor = reply[0];
    found += reply[1].length;
  } while (cursor !== '0' && Date.now() < budgetEnds);
  facts.hotUsers = found;
  facts.hotUsersComplete = cursor === '0';
}

/** A Cluster client from the node the URL names: a store on a Cluster runs L1's feed on every node. */
function clusterOf(target: EnvTarget, options: CheckOptions): RedisAdapter {
  return new RedisAdapter({ nodes: [target.url], keyPrefix: options.keyPrefix, timeoutMs: options.timeoutMs, connectTimeoutMs: options.timeoutMs });
}

/** Writes a throwaway key under the prefix and waits for a tracking connection (as L1's feed) to be told. */
async function checkInvalidation(facts: RedisFacts, adapter: RedisAdapter, options: CheckOptions): Promise<void> {
  let refused: Error | undefined;
  const feed = adapter.invalidations({ users: () => {}, all: () => {}, live: () => {}, refused: (error) => (refused = error) });
  try {
    if (adapter.cluster) await adapter.connect();
    facts.invalidationMs = Math.round((await feed.probe(options.timeoutMs * 2)) * 10) / 10;
    facts.invalidation = 'works';
  } catch (error) {
    facts.invalidation = 'failed';
    const reason = options.output.describe(refused ?? error);
    facts.problems.push(`invalidation: ${reason}`);
    facts.warnings.push('the in-process tier (L1) cannot stay coherent with this Redis, so stores keep it off (or set l1: false)');
  } finally {
    await settleWithin(CLOSE_MS, feed.close());
    if (adapter.cluster) await settleWithin(CLOSE_MS, adapter.close());
  }
}

function field(info: string, name: string): string | null {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? null;
}
