import { MemoryAdapter } from './adapters/memory.js';
import { PostgresAdapter, type PostgresAdapterOptions } from './adapters/postgres.js';
import { RedisAdapter, type RedisAdapterOptions } from './adapters/redis.js';
import { ConfigurationError, ErrorCode } from './errors.js';
import type { TieredStoreOptions } from './options.js';
import type { EncryptionOptions } from './crypto/keys.js';
import { checkUrl } from './model/validate.js';

type Env = Record<string, string | undefined>;

export interface FromEnvOptions extends Omit<TieredStoreOptions, 'redis' | 'postgres'> {
  /** Options for the Redis adapter made from the environment (its URL comes from the environment). */
  redis?: Omit<RedisAdapterOptions, 'url' | 'client'>;
  /** Options for the PostgreSQL adapter made from the environment. */
  postgres?: Omit<PostgresAdapterOptions, 'url' | 'sql'>;
}

export interface EnvTarget {
  url: string;
  /** The variable(s) it came from, for the log line. */
  source: string;
}

/** Redis: REDIS_URL, else REDIS_PUBLIC_URL, else REDISHOST + REDISPORT (+ REDISUSER, REDISPASSWORD). */
export function redisFromEnv(env: Env): EnvTarget | undefined {
  for (const name of ['REDIS_URL', 'REDIS_PUBLIC_URL']) {
    const url = value(env, name);
    if (url) return { url: checkUrl(url, name, ['redis:', 'rediss:']), source: name };
  }
  const host = value(env, 'REDISHOST');
  if (!host) return undefined;
  const auth = credentials(value(env, 'REDISUSER'), value(env, 'REDISPASSWORD'));
  const port = checkPort(value(env, 'REDISPORT') ?? '6379', 'REDISPORT');
  return { url: `redis://${auth}${hostPart(host)}:${port}`, source: 'REDISHOST/REDISPORT' };
}

/** PostgreSQL: DATABASE_URL, else DATABASE_PUBLIC_URL, else PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE. */
export function postgresFromEnv(env: Env): EnvTarget | undefined {
  for (const name of ['DATABASE_URL', 'DATABASE_PUBLIC_URL']) {
    const url = value(env, name);
    if (url) return { url: checkUrl(url, name, ['postgres:', 'postgresql:']), source: name };
  }
  const host = value(env, 'PGHOST');
  if (!host) return undefined;
  const auth = credentials(value(env, 'PGUSER') ?? 'postgres', value(env, 'PGPASSWORD'));
  const port = checkPort(value(env, 'PGPORT') ?? '5432', 'PGPORT');
  const database = encodeURIComponent(value(env, 'PGDATABASE') ?? value(env, 'PGUSER') ?? 'postgres');
  return { url: `postgres://${auth}${hostPart(host)}:${port}/${database}`, source: 'PGHOST/PGPORT/PGUSER/PGDATABASE' };
}

/** Store options with adapters for whatever the environment names. */
/** The store's options with the adapters the environment names (the CLI reaches into them). */
export function fromEnv(env: Env, options: FromEnvOptions): TieredStoreOptions & { redis?: RedisAdapter | undefined; postgres?: PostgresAdapter | undefined } {
  const { redis: redisOptions, postgres: postgresOptions, ...rest } = options;
  const redis = redisFromEnv(env);
  const postgres = postgresFromEnv(env);
  const encryption = rest.encryption ?? encryptionFromEnv(env);
  return {
    ...rest,
    ...(encryption ? { encryption } : {}),
    memory: rest.memory ?? new MemoryAdapter(),
    redis: redis && new RedisAdapter({ ...redisOptions, url: redis.url }),
    postgres: postgres && new PostgresAdapter({ ...postgresOptions, url: postgres.url }),
  };
}

/**
 * Encryption at rest: STORE_ENCRYPTION_KEYS is `id:key,id:key` with each key 32 bytes in base64
 * (or 64 hex digits); STORE_ENCRYPTION_CURRENT names the one that wraps new data keys (default: the
 * last listed); STORE_ENCRYPTION_ALLOW_PLAINTEXT=1 for a rollout. Errors name the variable and the
 * key id, never a key.
 */
export function encryptionFromEnv(env: Env): EncryptionOptions | undefined {
  const list = value(env, 'STORE_ENCRYPTION_KEYS');
  if (!list) return undefined;
  const keys: Record<string, Buffer> = {};
  let last = '';
  for (const item of list.split(',')) {
    const at = item.indexOf(':');
    const id = item.slice(0, at).trim();
    const text = item.slice(at + 1).trim();
    const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
    if (at <= 0 || key.length !== 32) {
      throw new ConfigurationError(
        ErrorCode.INVALID_OPTION,
        `STORE_ENCRYPTION_KEYS must be id:key pairs separated by commas, each key 32 bytes in base64 or hex${at > 0 ? ` (key '${id.slice(0, 64)}' is not)` : ''}`,
      );
    }
    keys[id] = key;
    last = id;
  }
  const allow = value(env, 'STORE_ENCRYPTION_ALLOW_PLAINTEXT');
  return { keys, current: value(env, 'STORE_ENCRYPTION_CURRENT') ?? last, ...(allow ? { allowPlaintext: allow === '1' || allow === 'true' } : {}) };
}

function value(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

function credentials(user: string | undefined, password: string | undefined): string {
  if (!user && !password) return '';
  return `${encodeURIComponent(user ?? '')}${password ? `:${encodeURIComponent(password)}` : ''}@`;
}

// IPv6 literals need brackets in a URL.
function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function checkPort(port: string, name: string): string {
  if (/^\d{1,5}$/.test(port) && Number(port) > 0 && Number(port) < 65536) return port;
  throw new ConfigurationError(ErrorCode.INVALID_URL, `${name} must be a port number, got ${JSON.stringify(port)}`);
}
