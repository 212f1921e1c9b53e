import { Writable } from 'node:stream';
import { AggregationTemporality, MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { instrumentStore, traceAdapter } from '../src/integrations/otel.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

const names = isolation('observability');
afterAll(async () => {
  await cleanupRedis(redisUrl(), names.keyPrefix);
  await cleanupPostgres(databaseUrl(), names.schema);
});

/** Collects on demand, like an exporter would, but in the test. */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
  async metrics(): Promise<MetricData[]> {
    const { resourceMetrics } = await this.collect();
    return resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
  }
}

const point = (all: MetricData[], name: string, attributes: Record<string, string> = {}) =>
  all.find((m) => m.descriptor.name === name)?.dataPoints.find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v))?.value;

describe("OpenTelemetry (tiered-conversation-store/otel), with the SDK's in-memory exporters", () => {
  it("spans around every tier call and metrics for the store's figures", async () => {
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('test');
    const reader = new TestReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('test');
    const store = new TieredStore({
      logger: false,
      // Redis's hit is the second read's: L1 would serve it from process memory.
      l1: false,
      redis: traceAdapter(new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }), { tracer }),
      postgres: traceAdapter(new PostgresAdapter({ url: databaseUrl(), schema: names.schema }), { tracer }),
    });
    const stop = instrumentStore(store, { meter });
    await store.addMemory('o1', 'user', 'hello');
    await store.getHistory('o1');
    await store.getHistory('o1');

    const spans = exporter.getFinishedSpans().map((s) => s.name);
    expect(spans).toEqual(
      expect.arrayContaining([
        'redis.connect',
        'postgres.connect',
        'redis.write',
        'postgres.write',
        'redis.readHistory',
        'postgres.readHistory',
        'redis.fillHistory',
      ]),
    );
    const write = exporter.getFinishedSpans().find((s) => s.name === 'postgres.write');
    expect(write?.attributes).toMatchObject({ 'db.system': 'postgresql', 'tcs.ops': 1 });

    const all = await reader.metrics();
    expect(point(all, 'tcs.tier.hits', { tier: 'redis' })).toBe(1);
    expect(point(all, 'tcs.tier.misses', { tier: 'redis' })).toBe(1);
    expect(point(all, 'tcs.operation.count', { operation: 'getHistory' })).toBe(2);
    expect(point(all, 'tcs.operation.p50', { operation: 'addMemory' })).toBeGreaterThan(0);
    expect(point(all, 'tcs.pending')).toBe(0);
    stop();
    await store.getHistory('o1');
    expect(point(await reader.metrics(), 'tcs.tier.hits', { tier: 'redis' })).not.toBe(2); // no longer observed
    await store.close();
  });

  it('metrics of the in-process tier (L1)', async () => {
    const reader = new TestReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('test');
    const store = new TieredStore({
      logger: false,
      redis: new RedisAdapter({ url: redisUrl(), keyPrefix: names.keyPrefix }),
      postgres: new PostgresAdapter({ url: databaseUrl(), schema: names.schema }),
    });
    const stop = instrumentStore(store, { meter });
    await store.addMemory('o3', 'user', 'hello');
    await expect.poll(async () => (await store.getHistory('o3')).length > 0 && store.stats().l1.hits, { timeout: 10_000 }).toBeGreaterThan(0);
    const all = await reader.metrics();
    expect(point(all, 'tcs.l1.hits')).toBe(store.stats().l1.hits);
    expect(point(all, 'tcs.l1.misses')).toBeGreaterThan(0);
    expect(point(all, 'tcs.l1.bytes')).toBeGreaterThan(0);
    expect(point(all, 'tcs.l1.entries')).toBe(1);
    for (const name of ['tcs.l1.evictions', 'tcs.l1.invalidations', 'tcs.l1.stale_serves']) expect(point(all, name), name).toBeTypeOf('number');
    stop();
    await store.close();
  });

  it('a failing tier call is an error span', async () => {
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('test');
    const proxy = await FaultProxy.start(redisUrl());
    const store = new TieredStore({
      logger: false,
      redis: traceAdapter(new RedisAdapter({ url: proxy.url(redisUrl()), keyPrefix: names.keyPrefix }), { tracer }),
    });
    await store.addMemory('o2', 'user', 'x');
    await proxy.refuse();
    await store.addMemory('o2', 'user', 'held');
    const failed = exporter.getFinishedSpans().filter((s) => s.status.code === 2);
    expect(failed.map((s) => s.name)).toContain('redis.write');
    await store.close();
    await proxy.close();
  });
});

describe('pino as the logger', () => {
  it('is taken as it is, with a child logger per tier, and secrets masked', async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(
          ...chunk
            .toString()
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        );
        done();
      },
    });
    const logger = pino({ level: 'info' }, stream);
    const proxy = await FaultProxy.start(redisUrl());
    const url = proxy.url(redisUrl()).replace('redis://', 'redis://default:pino-Secret-9@');
    const store = new TieredStore({ logger, redis: new RedisAdapter({ url, keyPrefix: names.keyPrefix }) });
    await store.addMemory('p1', 'user', 'x').catch(() => {});
    await proxy.refuse();
    await store.addMemory('p1', 'user', 'y');
    await store.close();
    await proxy.close();
    const down = lines.find((l) => String(l.msg).startsWith('redis is down'));
    expect(down).toMatchObject({ level: 40, tier: 'redis' });
    expect(lines.find((l) => String(l.msg).startsWith('tiers:'))).toMatchObject({ level: 30 });
    expect(JSON.stringify(lines)).not.toContain('pino-Secret-9');
  });
});
