import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../src/index.js';
import { BuiltCli, type CliRun } from './helpers/cli.js';
import { FaultProxy } from './helpers/fault-proxy.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl, type Isolation } from './helpers/services.js';
import { findProgram, itIfAble } from './helpers/run-registry.js';

// Issue 7: `npx tiered-conversation-store doctor | migrate | sync`, run as the built binary against the real servers.

const SECRET = `pw-${randomBytes(8).toString('hex')}`;
/** The PostgreSQL URL with a password (trust auth accepts any): it must never be printed. */
const PG = withPassword(databaseUrl(), SECRET);
const REDIS = redisUrl();
const SHIPPED = PostgresAdapter.migrations();
const VERSIONS = SHIPPED.map(({ file }) => Number(file.slice(0, 3)));

const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 2 });
const isolations: Isolation[] = [];
const proxies: FaultProxy[] = [];
let cli: BuiltCli;

function names(name: string): Isolation {
  const n = isolation(`cli_${name}`);
  isolations.push(n);
  return n;
}

async function proxy(url: string, mode: 'refuse' | 'hang'): Promise<string> {
  const p = await FaultProxy.start(url);
  proxies.push(p);
  await p[mode]();
  return p.url(url);
}

/** Runs the binary; whatever it does, the password never shows. */
async function run(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const result = await cli.run(args, env);
  expect(result.stdout + result.stderr).not.toContain(SECRET);
  return result;
}

function both(n: Isolation): Record<string, string> {
  return { REDIS_URL: REDIS, DATABASE_URL: PG, STORE_KEY_PREFIX: n.keyPrefix, STORE_SCHEMA: n.schema };
}

/**
 * Writes that only Redis's journal holds: a write-behind store whose PostgreSQL refuses
 * connections, so its final sync on close cannot move them.
 */
async function writePending(n: Isolation, write: (store: TieredStore) => Promise<unknown>): Promise<void> {
  const store = new TieredStore({
    logger: false,
    writeMode: 'write-behind',
    redis: new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix }),
    postgres: new PostgresAdapter({ url: await proxy(databaseUrl(), 'refuse'), schema: n.schema }),
  });
  await write(store);
  await store.close();
}

async function pendingInRedis(n: Isolation): Promise<number> {
  const redis = new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix });
  try {
    await redis.connect();
    return await redis.pendingCount();
  } finally {
    await redis.close();
  }
}

beforeAll(async () => {
  cli = await BuiltCli.build();
}, 120_000);

afterAll(async () => {
  await cli?.close();
  await Promise.all(proxies.map((p) => p.close()));
  await sql.end();
  for (const n of isolations) {
    await cleanupRedis(REDIS, n.keyPrefix);
    await cleanupPostgres(databaseUrl(), n.schema);
  }
});

describe('usage', () => {
  it('--help lists the commands, the environment and the exit codes', async () => {
    const { code, stdout, stderr } = await run(['--help']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^Usage: tiered-conversation-store <command> \[options\]$/m);
    for (const command of ['doctor', 'migrate', 'sync']) expect(stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    expect(stdout).toContain('REDIS_URL');
    expect(stdout).toContain('DATABASE_URL');
    expect(stdout).toMatch(/Exit codes:\n {2}0 +done.*\n {2}1 +a configured tier is unreachable[\s\S]*\n {2}2 +usage error/);
  });

  it('each command has its own help', async () => {
    const doctor = await run(['doctor', '--help']);
    expect(doctor.code).toBe(0);
    for (const option of ['--key-prefix', '--schema', '--timeout', '--json']) expect(doctor.stdout).toContain(option);
    const migrate = await run(['help', 'migrate']);
    expect(migrate.code).toBe(0);
    expect(migrate.stdout).toContain('--print');
  });

  it('an unknown command exits 2 with the commands and a suggestion', async () => {
    const { code, stdout, stderr } = await run(['docter']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('unknown command "docter" (did you mean "doctor"?)');
    expect(stderr).toContain('doctor, migrate, sync');
    expect(stderr).toContain('--help');
  });

  it('an unknown option, a missing value or no command at all exits 2 saying what is wrong', async () => {
    const unknown = await run(['doctor', '--verbose']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/doctor: unknown option --verbose; its options are --key-prefix, --schema, --timeout, --json/);
    expect(unknown.stderr).toContain('tiered-conversation-store doctor --help');
    const missing = await run(['sync', '--schema']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--schema needs a value');
    const bad = await run(['doctor', '--timeout', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--timeout must be a whole number of milliseconds');
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('missing command');
  });
});

describe('doctor', () => {
  it('with nothing configured: a memory-only report, exit 0', async () => {
    const { code, stdout, stderr } = await run(['doctor']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toContain('redis: not configured');
    expect(stdout).toContain('postgres: not configured');
    expect(stdout).toMatch(/^ok: memory only/m);
    const json = JSON.parse((await run(['doctor', '--json'])).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ ok: true, memoryOnly: true, redis: { configured: false }, postgres: { configured: false } });
  });

  describe('on servers holding data', () => {
    const n = names('doctor');
    const PENDING = 7;

    beforeAll(async () => {
      const store = new TieredStore({
        logger: false,
        redis: new RedisAdapter({ url: REDIS, keyPrefix: n.keyPrefix }),
        postgres: new PostgresAdapter({ url: databaseUrl(), schema: n.schema }),
      });
      await store.addMemory('u1', 'user', 'hello');
      await store.addMemory('u1', 'assistant', 'hi');
      await store.addEmailSubscriber('u1');
      await store.addMemory('u2', 'user', 'hey');
      await store.setUserPhone('u2', '+79991234567');
      await store.setUserPhone('u3', '+79990000000');
      await store.addMemory('u4', 'user', 'forget me');
      await store.deleteUser('u4'); // leaves a tombstone row: not a user
      await store.close();
      await writePending(n, async (s) => {
        for (let i = 0; i < PENDING; i++) await s.addMemory('u5', 'user', `pending ${i}`);
      });
      const deadLetters = sql(`${n.schema}.dead_letters`);
      await sql`insert into ${deadLetters} (user_id, op_id, kind, entry, error) values ('u9', 'x1', 'append', '{}', 'refused'), ('u9', 'x2', 'append', '{}', 'refused')`;
    });

    it('reports both tiers: source, versions, migrations, journal, users, subscribers, dead letters; exit 0', async () => {
      const [{ server_version: pgVersion }] = (await sql`show server_version`) as unknown as [{ server_version: string }];
      const { code, stdout, stderr } = await run(['doctor'], both(n));
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(stdout).toContain(`redis: ${REDIS} (from REDIS_URL)`);
      expect(stdout).toContain('postgres: postgres://postgres:***@');
      expect(stdout).toContain('(from DATABASE_URL)');
      expect(stdout).toMatch(/reachable +yes, round trip [\d.]+ ms \(median of 5 pings\)/);
      expect(stdout).toMatch(/reachable +yes, round trip [\d.]+ ms \(median of 5 queries\)/);
      expect(stdout).toMatch(/server +Redis \d+\.\d+\.\d+, standalone/);
      expect(stdout).toContain(`PostgreSQL ${pgVersion}`);
      expect(stdout).toMatch(new RegExp(`migrations +${VERSIONS.join(', ')} applied: up to date`));
      expect(stdout).toMatch(new RegExp(`pending +${PENDING} writes in the journal`));
      expect(stdout).toMatch(/hot users +5 \(keys /);
      expect(stdout).toMatch(/invalidation +works: a change under the prefix reached a tracking connection in [\d.]+ ms/);
      expect(stdout).toMatch(/users +3 \(1 subscribed\)/);
      expect(stdout).toMatch(/dead letters +2$/m);
      expect(stdout).toMatch(/^ok: every configured tier answers$/m);
    });

    it('--json is the same report for machines', async () => {
      const { code, stdout } = await run(['doctor', '--json', '--key-prefix', n.keyPrefix, '--schema', n.schema], { REDIS_URL: REDIS, DATABASE_URL: PG });
      expect(code).toBe(0);
      const report = JSON.parse(stdout) as Record<string, unknown>;
      expect(report).toMatchObject({
        ok: true,
        memoryOnly: false,
        keyPrefix: n.keyPrefix,
        schema: n.schema,
        redis: {
          configured: true,
          source: 'REDIS_URL',
          reachable: true,
          error: null,
          mode: 'standalone',
          cluster: false,
          pending: PENDING,
          hotUsers: 5,
          hotUsersComplete: true,
          invalidation: 'works',
        },
        postgres: {
          configured: true,
          source: 'DATABASE_URL',
          reachable: true,
          migrations: { applied: VERSIONS, shipped: VERSIONS, missing: [], unknown: [], state: 'up to date' },
          users: 3,
          subscribers: 1,
          deadLetters: 2,
          problems: [],
        },
      });
      expect((report.redis as { latencyMs: number }).latencyMs).toBeGreaterThan(0);
      expect((report.postgres as { url: string }).url).toMatch(/^postgres:\/\/postgres:\*\*\*@/);
    });

    it("reads Railway's variables (REDISHOST…, PGHOST… with PGPASSWORD) and names them", async () => {
      const r = new URL(REDIS);
      const p = new URL(databaseUrl());
      const env = {
        REDISHOST: r.hostname,
        REDISPORT: r.port || '6379',
        PGHOST: p.hostname,
        PGPORT: p.port || '5432',
        PGUSER: decodeURIComponent(p.username),
        PGPASSWORD: SECRET,
        PGDATABASE: p.pathname.slice(1),
      };
      const { code, stdout } = await run(['doctor', '--key-prefix', n.keyPrefix, '--schema', n.schema], env);
      expect(code).toBe(0);
      expect(stdout).toContain('(from REDISHOST/REDISPORT)');
      expect(stdout).toContain('(from PGHOST/PGPORT/PGUSER/PGDATABASE)');
      expect(stdout).toContain(':***@');
      expect(stdout).toMatch(/users +3 \(1 subscribed\)/);
    });
  });

  it('a schema nobody migrated yet is not an error', async () => {
    const fresh = names('doctor_fresh');
    const { code, stdout } = await run(['doctor', '--json'], both(fresh));
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { postgres: Record<string, unknown>; redis: Record<string, unknown> };
    expect(report.postgres).toMatchObject({
      reachable: true,
      migrations: { applied: [], missing: VERSIONS, state: 'not migrated yet' },
      users: null,
      deadLetters: 0,
    });
    expect(report.redis).toMatchObject({ pending: 0, hotUsers: 0 });
    const text = await run(['doctor'], both(fresh));
    expect(text.stdout).toMatch(/migrations +not migrated yet/);
    expect(text.stdout).toMatch(/dead letters +none recorded/);
  });

  it('a tier that refuses connections: exit 1, the error, and the other tier still reported', async () => {
    const n = names('doctor_refused');
    const { code, stdout } = await run(['doctor'], { ...both(n), DATABASE_URL: withPassword(await proxy(databaseUrl(), 'refuse'), SECRET) });
    expect(code).toBe(1);
    expect(stdout).toMatch(/postgres: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/\S+ \(from DATABASE_URL\)\n +reachable +NO: .*ECONNREFUSED/);
    expect(stdout).toMatch(/redis: .*\n +reachable +yes/);
    expect(stdout).toMatch(/^problem: postgres is unreachable$/m);

    const redisDown = await run(['doctor', '--json'], { ...both(n), REDIS_URL: await proxy(REDIS, 'refuse') });
    expect(redisDown.code).toBe(1);
    const report = JSON.parse(redisDown.stdout) as { ok: boolean; redis: { reachable: boolean; error: string }; postgres: { reachable: boolean } };
    expect(report.ok).toBe(false);
    expect(report.redis.reachable).toBe(false);
    expect(report.redis.error).toMatch(/ECONNREFUSED/);
    expect(report.postgres.reachable).toBe(true);
  });

  it('hung servers: doctor gives up at its deadline and exits 1', async () => {
    const n = names('doctor_hung');
    const env = { ...both(n), REDIS_URL: await proxy(REDIS, 'hang'), DATABASE_URL: withPassword(await proxy(databaseUrl(), 'hang'), SECRET) };
    const timeoutMs = 1000;
    // What starting the CLI costs on this machine now (a loaded CI machine took over 2 s): no tier to reach.
    const startup = (await run(['doctor', '--json'])).elapsedMs;
    const { code, stdout, elapsedMs } = await run(['doctor', '--json', '--timeout', String(timeoutMs)], env);
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { redis: { reachable: boolean; error: string }; postgres: { reachable: boolean; error: string } };
    expect(report.redis).toMatchObject({ reachable: false });
    expect(report.postgres).toMatchObject({ reachable: false });
    expect(report.redis.error).toMatch(/did not answer within 1000 ms/);
    expect(report.postgres.error).toMatch(/1000 ms|CONNECT_TIMEOUT/);
    expect(elapsedMs).toBeGreaterThanOrEqual(timeoutMs);
    expect(elapsedMs).toBeLessThan(timeoutMs + startup + 2500);
  });

  it('installed without ioredis and postgres: memory only still works; a configured tier says what to install, exit 1', async () => {
    const bare = await cli.withoutPeers();
    try {
      expect((await bare.run(['doctor'])).code).toBe(0);
      const { code, stdout } = await bare.run(['doctor'], { REDIS_URL: REDIS, DATABASE_URL: PG });
      expect(stdout).not.toContain(SECRET);
      expect(code).toBe(1);
      expect(stdout).toMatch(/redis: .*\n +reachable +NO: RedisAdapter needs the "ioredis" package, which is not installed: run npm install ioredis/);
      expect(stdout).toMatch(/postgres: .*\n +reachable +NO: PostgresAdapter needs the "postgres" package, which is not installed: run npm install postgres/);
      const syncing = await bare.run(['sync'], { REDIS_URL: REDIS, DATABASE_URL: PG });
      expect(syncing.code).toBe(1);
      expect(syncing.stderr).toContain('npm install ioredis');
    } finally {
      await bare.close();
    }
  });

  it('a variable that is not a usable URL: exit 2 naming it, password masked', async () => {
    const { code, stdout, stderr } = await run(['doctor'], { REDIS_URL: `http://default:${SECRET}@example.com:6379` });
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain('REDIS_URL must start with redis:// or rediss://');
    expect(stderr).toContain('default:***@example.com');
  });
});

describe('migrate', () => {
  it('--print prints every migration, ready for psql on a fresh schema, without a server', async () => {
    const fresh = names('migrate_print');
    const { code, stdout } = await run(['migrate', '--print', '--schema', fresh.schema]);
    expect(code).toBe(0);
    expect(SHIPPED.length).toBeGreaterThanOrEqual(2);
    for (const { file, sql: text } of SHIPPED) {
      expect(stdout).toContain(`-- ${file}`);
      expect(stdout).toContain(text.trimEnd());
    }
    // What it printed is what a DBA would run (one session, like psql): it creates a working schema.
    const session = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
    await session
      .unsafe(stdout)
      .simple()
      .finally(() => session.end());
    const rows = await sql`select version from ${sql(`${fresh.schema}.schema_migrations`)} order by version`;
    expect(rows.map((r) => r.version as number)).toEqual(VERSIONS);
    const again = await run(['migrate'], { DATABASE_URL: PG, STORE_SCHEMA: fresh.schema });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already up to date');
  });

  it('applies the migrations to a fresh schema and says which; a second run applies none', async () => {
    const fresh = names('migrate');
    const { code, stdout, stderr } = await run(['migrate', '--schema', fresh.schema], { DATABASE_URL: PG });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain(`migrating schema "${fresh.schema}" of postgres://postgres:***@`);
    expect(stdout).toContain(`applied ${SHIPPED.map(({ file }) => `${Number(file.slice(0, 3))} (${file.slice(4, -4)})`).join(', ')}`);
    const rows = await sql`select version from ${sql(`${fresh.schema}.schema_migrations`)} order by version`;
    expect(rows.map((r) => r.version as number)).toEqual(VERSIONS);

    const again = await run(['migrate', '--schema', fresh.schema], { DATABASE_URL: PG });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already up to date: nothing to apply');
    expect(again.stdout).toContain(`applied versions now: ${VERSIONS.join(', ')}`);
  });

  it('exits 2 without a PostgreSQL to migrate, and 1 when it is unreachable', async () => {
    const none = await run(['migrate']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no PostgreSQL is configured');
    const fresh = names('migrate_down');
    const down = await run(['migrate', '--schema', fresh.schema], { DATABASE_URL: withPassword(await proxy(databaseUrl(), 'refuse'), SECRET) });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/migrate failed: .*ECONNREFUSED/);
  });
});

describe('sync', () => {
  const MESSAGES = 1200;

  async function writeJournal(n: Isolation): Promise<void> {
    await writePending(n, async (store) => {
      for (let u = 0; u < 6; u++) {
        await Promise.all(Array.from({ length: MESSAGES / 6 }, (_, i) => store.addMemory(`s${u}`, 'user', `message ${i}`)));
      }
      await store.setUserPhone('s0', '+79991234567');
      await store.setBookingData('s1', { service: 'haircut' });
      await store.addEmailSubscriber('s2');
    });
  }

  it('moves the pending write-behind writes to PostgreSQL and prints the counts', async () => {
    const n = names('sync');
    await writeJournal(n);
    expect(await pendingInRedis(n)).toBe(MESSAGES + 3);

    const { code, stdout, stderr } = await run(['sync'], both(n));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain(`${(MESSAGES + 3).toLocaleString('en-US')} writes pending in Redis's journal`);
    expect(stdout).toContain(`moved ${MESSAGES.toLocaleString('en-US')} messages, 2 user data changes and 1 subscription change to PostgreSQL`);
    expect(stdout).toContain('nothing left pending');
    // Not a terminal: plain lines, no bar redrawn in place.
    expect(stdout).toMatch(/^progress: 0 of 1,203 writes moved \(0%\)$/m);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape codes is the point
    expect(stdout).not.toMatch(/[\r\x1b]/);

    const [counts] = await sql`select count(*)::int as n, count(distinct user_id)::int as users from ${sql(`${n.schema}.messages`)}`;
    expect(counts).toEqual({ n: MESSAGES, users: 6 });
    const users = await sql`select user_id, phone, booking, subscribed from ${sql(`${n.schema}.users`)} order by user_id`;
    expect(users.map((u) => ({ ...u }))).toEqual([
      { user_id: 's0', phone: '+79991234567', booking: null, subscribed: false },
      { user_id: 's1', phone: null, booking: { service: 'haircut' }, subscribed: false },
      { user_id: 's2', phone: null, booking: null, subscribed: true },
    ]);
    expect(await pendingInRedis(n)).toBe(0);

    const json = await run(['sync', '--json'], both(n));
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, pendingBefore: 0, result: { messages: 0, userData: 0, subscribers: 0, pending: 0 }, errors: [] });
  });

  // A pseudo-terminal comes from util-linux's script(1).
  itIfAble(findProgram('script') ? undefined : 'script (util-linux) is not installed; apt-get install bsdutils')(
    'on a terminal, a large journal gets a progress bar',
    async () => {
      const n = names('sync_tty');
      await writeJournal(n);
      const { code, stdout } = await cli.runOnTty(['sync'], both(n));
      expect(stdout).not.toContain(SECRET);
      expect(code).toBe(0);
      expect(stdout).toContain('\r\x1b[2K[------------------------------]   0%  0 of 1,203 writes moved');
      expect(stdout).toContain('\r\x1b[2K[##############################] 100%  1,203 of 1,203 writes moved');
      expect(stdout).toContain('nothing left pending');
      expect(await pendingInRedis(n)).toBe(0);
    },
  );

  it('exits 1 and moves nothing when PostgreSQL is unreachable; 2 when a tier is not configured', async () => {
    const n = names('sync_down');
    await writePending(n, (store) => store.addMemory('d1', 'user', 'waiting'));
    const down = await run(['sync'], { ...both(n), DATABASE_URL: withPassword(await proxy(databaseUrl(), 'refuse'), SECRET) });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/sync: postgres is unreachable: .*ECONNREFUSED/);
    expect(await pendingInRedis(n)).toBe(1);

    const redisOnly = await run(['sync'], { REDIS_URL: REDIS });
    expect(redisOnly.code).toBe(2);
    expect(redisOnly.stderr).toContain('needs both');
  });
});

function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  if (!parsed.username) parsed.username = 'postgres';
  parsed.password = password;
  return parsed.toString();
}
