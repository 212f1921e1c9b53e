import { metrics, SpanStatusCode, trace, type Meter, type Tracer } from '@opentelemetry/api';
import type { StorageAdapter } from '../adapters/contract.js';
import { CACHE_METHODS } from '../cache/contract.js';
import type { TieredStore } from '../store.js';

const SCOPE = 'tiered-conversation-store';
const DB_SYSTEM: Record<string, string> = { redis: 'redis', postgres: 'postgresql', memory: 'memory' };
// Adapter methods that reach a server; bind/describe/isUnavailable and friends are not worth a span.
const TRACED = new Set<string>([
  'connect',
  'ping',
  'write',
  'readHistory',
  'readUser',
  'readSubscribers',
  'isSubscriber',
  ...CACHE_METHODS.filter((method) => method !== 'onReady'),
]);

/**
 * Wraps an adapter so every call it makes to its server is a span (`redis.write`,
 * `postgres.readHistory`, ...), with `db.system` and, for writes, the number of ops. Pass the
 * result to the store in place of the adapter.
 */
export function traceAdapter<A extends StorageAdapter>(adapter: A, options: { tracer?: Tracer } = {}): A {
  const tracer = options.tracer ?? trace.getTracer(SCOPE);
  return new Proxy(adapter, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      // Private fields need the real adapter as `this`.
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      if (typeof property !== 'string' || !TRACED.has(property)) return method;
      return (...args: unknown[]) =>
        tracer.startActiveSpan(`${target.name}.${property}`, async (span) => {
          span.setAttribute('db.system', DB_SYSTEM[target.name] ?? target.name);
          if (property === 'write' && Array.isArray(args[0])) span.setAttribute('tcs.ops', args[0].length);
          try {
            return await method(...args);
          } catch (error) {
            span.recordException(error as Error);
            span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
            throw error;
          } finally {
            span.end();
          }
        });
    },
  });
}

/**
 * Publishes `store.stats()` as OpenTelemetry metrics, read at each collection: per tier
 * `tcs.tier.hits|misses|errors|fallbacks` (counters, attribute `tier`), per method
 * `tcs.operation.count|errors` (counters) and `tcs.operation.p50|p99` (gauges, ms, attribute
 * `operation`), and the gauges `tcs.pending`, `tcs.pending.oldest_age` (ms), `tcs.sync.lag` (ms),
 * `tcs.dead_letters`; with the in-process tier on, `tcs.l1.hits|misses|evictions|invalidations|stale_serves`
 * (counters) and `tcs.l1.bytes|entries` (gauges). Returns a function that stops publishing.
 */
export function instrumentStore(store: TieredStore, options: { meter?: Meter } = {}): () => void {
  const meter = options.meter ?? metrics.getMeter(SCOPE);
  const counter = (name: string, description: string) => meter.createObservableCounter(name, { description });
  const gauge = (name: string, description: string, unit = '') => meter.createObservableGauge(name, { description, unit });
  const tier = {
    hits: counter('tcs.tier.hits', 'Reads a cache answered from a copy it held'),
    misses: counter('tcs.tier.misses', 'Reads a cache had no copy for'),
    errors: counter('tcs.tier.errors', 'Tier calls that failed'),
    fallbacks: counter('tcs.tier.fallbacks', 'Operations a lower tier took instead'),
  };
  const operation = {
    count: counter('tcs.operation.count', 'Store calls'),
    errors: counter('tcs.operation.errors', 'Store calls that failed'),
    p50: gauge('tcs.operation.p50', 'Median latency over the last 1024 calls', 'ms'),
    p99: gauge('tcs.operation.p99', '99th percentile latency over the last 1024 calls', 'ms'),
  };
  const pending = gauge('tcs.pending', 'Writes not yet in the durable tier');
  const oldest = gauge('tcs.pending.oldest_age', 'Age of the oldest pending write', 'ms');
  const lag = gauge('tcs.sync.lag', 'Time since the last sync pass', 'ms');
  const dead = gauge('tcs.dead_letters', 'Writes PostgreSQL refused for good');
  const l1 = {
    hits: counter('tcs.l1.hits', 'Reads served from process memory (L1)'),
    misses: counter('tcs.l1.misses', 'Reads L1 could have served but held no serving copy for'),
    evictions: counter('tcs.l1.evictions', 'L1 copies dropped to stay within l1.maxBytes'),
    invalidations: counter('tcs.l1.invalidations', 'Users whose L1 copies stopped serving because a write changed them'),
    staleServes: counter('tcs.l1.stale_serves', 'Reads answered from a last-known L1 copy with Redis and PostgreSQL both down'),
    bytes: gauge('tcs.l1.bytes', 'Estimated bytes L1 holds', 'By'),
    entries: gauge('tcs.l1.entries', 'Copies L1 holds'),
  };
  const instruments = [...Object.values(tier), ...Object.values(operation), pending, oldest, lag, dead, ...Object.values(l1)];

  const observe: Parameters<Meter['addBatchObservableCallback']>[0] = (result) => {
    const stats = store.stats();
    for (const [name, counts] of Object.entries(stats.tiers)) {
      for (const key of ['hits', 'misses', 'errors', 'fallbacks'] as const) result.observe(tier[key], counts[key], { tier: name });
    }
    for (const [name, op] of Object.entries(stats.operations)) {
      result.observe(operation.count, op.count, { operation: name });
      result.observe(operation.errors, op.errors, { operation: name });
      result.observe(operation.p50, op.p50Ms, { operation: name });
      result.observe(operation.p99, op.p99Ms, { operation: name });
    }
    result.observe(pending, stats.pending);
    if (stats.oldestPendingAgeMs !== null) result.observe(oldest, stats.oldestPendingAgeMs);
    if (stats.syncLagMs !== null) result.observe(lag, stats.syncLagMs);
    result.observe(dead, stats.deadLetters);
    if (stats.l1.enabled)
      for (const key of ['hits', 'misses', 'evictions', 'invalidations', 'staleServes', 'bytes', 'entries'] as const) result.observe(l1[key], stats.l1[key]);
  };
  meter.addBatchObservableCallback(observe, instruments);
  return () => meter.removeBatchObservableCallback(observe, instruments);
}
