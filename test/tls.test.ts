import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TieredStore } from '../src/index.js';
import { describeIfAble } from './helpers/run-registry.js';
import { missingForTls, TlsServers } from './helpers/tls.js';

// The contract: rediss:// and sslmode=require work, through fromEnv like on Railway.
// Private servers: redis-server and a PostgreSQL cluster of the current user (no root needed).
describeIfAble('TLS to Redis and PostgreSQL', missingForTls(), () => {
  let servers: TlsServers;
  beforeAll(async () => {
    servers = await TlsServers.start();
  }, 60_000);
  afterAll(() => servers?.stop());

  it('a store from REDIS_URL=rediss://… and DATABASE_URL=…?sslmode=require talks TLS to both', async () => {
    const store = TieredStore.fromEnv(
      { REDIS_URL: servers.redisUrl, DATABASE_URL: servers.databaseUrl },
      { logger: false, redis: { redisOptions: { tls: { ca: servers.ca } } } },
    );
    await store.addMemory('tls-user', 'user', 'over TLS');
    expect((await store.getHistory('tls-user')).map((m) => m.content)).toEqual(['over TLS']);
    expect(store.health()).toMatchObject({ redis: 'up', postgres: 'up' });
    await store.close();

    // The PostgreSQL side really was encrypted: the server says so for a connection made the same way.
    const sql = postgres(servers.databaseUrl, { onnotice: () => {} });
    const [row] = await sql`select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
    expect(row?.ssl).toBe(true);
    const [count] = await sql`select count(*)::int as n from tcs.messages where user_id = 'tls-user'`;
    expect(count?.n).toBe(1);
    await sql.end();
  }, 60_000);

  it('a plain redis:// URL to the TLS-only Redis is down, not hung (the store starts on PostgreSQL)', async () => {
    const store = TieredStore.fromEnv({ REDIS_URL: servers.redisUrl.replace('rediss://', 'redis://'), DATABASE_URL: servers.databaseUrl }, { logger: false });
    await store.addMemory('tls-user-2', 'user', 'still stored');
    expect(store.health().redis).toBe('down');
    expect((await store.getHistory('tls-user-2')).map((m) => m.content)).toEqual(['still stored']);
    await store.close();
  }, 30_000);
});
