import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { inject } from 'vitest';

export interface Isolation {
  /** Prefix for every Redis key a test file writes, e.g. `t_store_1a2b3c4d:`. */
  keyPrefix: string;
  /** A fresh PostgreSQL schema name (valid lowercase identifier, at most 63 chars). */
  schema: string;
}

const MAX_IDENTIFIER_LENGTH = 63;
const SUFFIX_HEX_CHARS = 8;
const SCAN_BATCH = 500;

export function redisUrl(): string {
  return provided('redisUrl');
}

export function databaseUrl(): string {
  return provided('databaseUrl');
}

/** Unique names for one test file, so files can run in parallel against shared servers. */
export function isolation(name: string): Isolation {
  const suffix = randomBytes(SUFFIX_HEX_CHARS / 2).toString('hex');
  const room = MAX_IDENTIFIER_LENGTH - 't__'.length - suffix.length;
  const slug = slugify(name).slice(0, room).replace(/_+$/, '') || 'x';
  const schema = `t_${slug}_${suffix}`;
  return { keyPrefix: `${schema}:`, schema };
}

/** Deletes every key starting with `keyPrefix`, walking the keyspace with SCAN. */
export async function cleanupRedis(url: string, keyPrefix: string): Promise<void> {
  if (!keyPrefix) throw new Error('cleanupRedis: refusing an empty keyPrefix (it would match every key)');
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // Failures reject the awaited calls below; the listener only stops ioredis logging them twice.
  client.on('error', () => {});
  try {
    await client.connect();
    await deleteMatching(client, `${escapeGlob(keyPrefix)}*`);
  } finally {
    await closeRedis(client);
  }
}

export async function cleanupPostgres(url: string, schema: string): Promise<void> {
  const sql = postgres(url, { connect_timeout: 5, onnotice: () => {}, max: 1 });
  try {
    await sql`drop schema if exists ${sql(schema)} cascade`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function provided(key: 'redisUrl' | 'databaseUrl'): string {
  const value = inject(key);
  if (!value) {
    throw new Error(`No ${key} was provided: run the tests through vitest.config.ts, whose globalSetup resolves the services.`);
  }
  return value;
}

function slugify(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
}

async function deleteMatching(client: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_BATCH);
    if (keys.length > 0) await client.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** SCAN MATCH treats these as glob syntax; a prefix must match only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

async function closeRedis(client: Redis): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
