import { Redis } from 'ioredis';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { abortRun } from './run-setup.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    databaseUrl: string;
  }
}

interface ServiceSpec {
  label: string;
  envVar: string;
  exampleUrl: string;
  startContainer: () => Promise<StartedService>;
  checkName: string;
  check: (url: string) => Promise<void>;
}

interface StartedService {
  url: string;
  stop: () => Promise<void>;
}

interface ResolvedService extends StartedService {
  source: string;
}

const CHECK_TIMEOUT_MS = 6_000;

const REDIS: ServiceSpec = {
  label: 'Redis',
  envVar: 'TEST_REDIS_URL',
  exampleUrl: 'redis://127.0.0.1:6379',
  startContainer: startRedisContainer,
  checkName: 'PING',
  check: pingRedis,
};

const POSTGRES: ServiceSpec = {
  label: 'PostgreSQL',
  envVar: 'TEST_DATABASE_URL',
  exampleUrl: 'postgres://postgres@127.0.0.1:5432/test',
  startContainer: startPostgresContainer,
  checkName: 'select 1',
  check: selectOne,
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let resolved: { redis: ResolvedService; database: ResolvedService };
  try {
    resolved = await resolveBoth();
  } catch (error) {
    // Said plainly and first, not after "No test files found", the include lists and a stack trace.
    console.error(`\n${errorMessage(error)}\n\nTests that need no server: npm run test:unit\n`);
    await abortRun();
    process.exit(1);
  }
  const { redis, database } = resolved;
  project.provide('redisUrl', redis.url);
  project.provide('databaseUrl', database.url);
  console.log(`Integration services: Redis ${maskUrl(redis.url)} (${redis.source}), ` + `PostgreSQL ${maskUrl(database.url)} (${database.source})`);
  return () => stopAll([redis, database]);
}

/** Resolves both services; if either fails, stops what did start and reports every failure. */
async function resolveBoth(): Promise<{ redis: ResolvedService; database: ResolvedService }> {
  const [redis, database] = await Promise.allSettled([resolveService(REDIS), resolveService(POSTGRES)]);
  if (redis.status === 'fulfilled' && database.status === 'fulfilled') {
    return { redis: redis.value, database: database.value };
  }
  const outcomes = [redis, database];
  await stopAll(outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : [])));
  throw new Error(outcomes.flatMap((o) => (o.status === 'rejected' ? [errorMessage(o.reason)] : [])).join('\n'));
}

async function resolveService(spec: ServiceSpec): Promise<ResolvedService> {
  const fromEnv = process.env[spec.envVar]?.trim();
  if (fromEnv) {
    await checkOrExplain(spec, fromEnv, `${spec.envVar}=${maskUrl(fromEnv)}`);
    return { url: fromEnv, source: spec.envVar, stop: async () => {} };
  }
  const container = await startOrExplain(spec);
  try {
    await checkOrExplain(spec, container.url, `the Testcontainers container at ${maskUrl(container.url)}`);
  } catch (error) {
    await container.stop().catch(() => {});
    throw error;
  }
  return { ...container, source: 'Testcontainers' };
}

async function startOrExplain(spec: ServiceSpec): Promise<StartedService> {
  try {
    return await spec.startContainer();
  } catch (error) {
    throw new Error(
      `Integration tests need ${spec.label}: set ${spec.envVar}=${spec.exampleUrl} ` +
        `(or make Docker available for Testcontainers). Cause: ${shortCause(error)}`,
    );
  }
}

async function checkOrExplain(spec: ServiceSpec, url: string, where: string): Promise<void> {
  try {
    await withTimeout(spec.check(url), CHECK_TIMEOUT_MS, `no answer within ${CHECK_TIMEOUT_MS} ms`);
  } catch (error) {
    throw new Error(
      `Integration tests need ${spec.label}, but ${where} failed its ${spec.checkName} check: ${shortCause(error)}. ` +
        `Start ${spec.label} there or set ${spec.envVar} to a running server (e.g. ${spec.envVar}=${spec.exampleUrl}).`,
    );
  }
}

async function startRedisContainer(): Promise<StartedService> {
  // Loaded lazily: with TEST_REDIS_URL set, the Docker client is never needed.
  const { RedisContainer } = await import('@testcontainers/redis');
  const container = await new RedisContainer('redis:7-alpine').start();
  return {
    url: container.getConnectionUrl(),
    stop: async () => {
      await container.stop();
    },
  };
}

async function startPostgresContainer(): Promise<StartedService> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:15-alpine').start();
  return {
    url: container.getConnectionUri(),
    stop: async () => {
      await container.stop();
    },
  };
}

async function pingRedis(url: string): Promise<void> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 3_000,
    commandTimeout: 3_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // connect() only rejects with "Connection is closed."; the socket error says why.
  let socketError: Error | undefined;
  client.on('error', (error: Error) => {
    socketError = error;
  });
  try {
    await client.connect();
    const reply = await client.ping();
    if (reply !== 'PONG') throw new Error(`PING answered ${JSON.stringify(reply)}`);
  } catch (error) {
    throw socketError ?? error;
  } finally {
    client.disconnect();
  }
}

async function selectOne(url: string): Promise<void> {
  const sql = postgres(url, { connect_timeout: 5, onnotice: () => {}, max: 1 });
  try {
    await sql`select 1`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function stopAll(services: StartedService[]): Promise<void> {
  await Promise.allSettled(services.map((service) => service.stop()));
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
  }
}

function shortCause(error: unknown): string {
  const message = errorMessage(error);
  const firstLine = (message.split('\n')[0] ?? message).replace(/\.+$/, '');
  return firstLine.length > 200 ? `${firstLine.slice(0, 197)}...` : firstLine;
}

function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.map(errorMessage).join('; ');
  }
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    const text = error.message || error.name;
    return code && !text.includes(code) ? `${code}: ${text}` : text;
  }
  return String(error);
}
