import { expect, it } from 'vitest';
import { BuiltCli } from './helpers/cli.js';
import { ErrorCode, PostgresAdapter, type TieredStore } from '../src/index.js';
import { encryptExisting } from '../src/crypto/encrypt-existing.js';
import { KeyRing } from '../src/crypto/keys.js';
import { cleanups, encryption, K1, K2, rawPostgres, rawRedis } from './helpers/encryption.js';
import { databaseUrl, redisUrl, type Isolation } from './helpers/services.js';
import { durableConfig, makeStore } from './helpers/stores.js';

// encrypt-existing: the rows PostgreSQL holds from before encryption are sealed in batches; a run
// stopped part way resumes where it stopped; a bot editing rows meanwhile is never undone.

const { cleanup, names } = cleanups();

function adapter(n: Isolation): PostgresAdapter {
  const pg = new PostgresAdapter({ url: databaseUrl(), schema: n.schema });
  pg.bind(durableConfig());
  cleanup.push(() => pg.close());
  return pg;
}

const USERS = ['a', 'b', 'c'];

it('a run interrupted after two batches resumes and seals everything; a concurrent edit is kept, not undone', async () => {
  const n = names('encrypt existing');
  // Before encryption: plaintext everywhere.
  const plain = makeStore('write-through', n, { logger: false, summarize: ({ messages }) => `PLAIN-summary of ${messages.length}`, summarizeAfterTokens: 1e9 });
  cleanup.push(() => plain.close());
  const ids = new Map<string, string[]>();
  for (const user of USERS) {
    for (let i = 0; i < 6; i++) {
      const m = await plain.addMemory(user, 'user', `PLAIN-${user}-${i}`, i === 0 ? { meta: { note: `PLAIN-meta-${user}` } } : {});
      ids.set(user, [...(ids.get(user) ?? []), m.id]);
    }
    await plain.setUserPhone(user, '+15550001111');
    await plain.setBookingData(user, { what: `PLAIN-booking-${user}` });
    await plain.setThreadTitle(user, 'main', `PLAIN-title-${user}`);
    await plain.summarizeNow(user);
  }
  await plain.close();

  // The rollout: bots run with encryption and allowPlaintext while the rows are rewritten.
  const bot: TieredStore = makeStore('write-through', n, { encryption: encryption({ allowPlaintext: true }) });
  cleanup.push(() => bot.close());
  const pg = adapter(n);
  await pg.connect();
  const ring = new KeyRing(encryption());
  const first = await encryptExisting({ postgres: pg, ring, batch: 4, maxBatches: 2 });
  expect(first.done).toBe(false);
  expect(first.tables.messages.sealed).toBe(8);
  const raw = await rawPostgres(databaseUrl(), n.schema);
  expect(raw).toContain('PLAIN-c-5'); // not reached yet
  expect(raw).not.toContain('PLAIN-a-0'); // sealed by the first run
  expect(raw).toContain('encrypt_progress');

  // The second run races an edit: a bot rewrites a row of the batch after it was read.
  const target = ids.get('c')?.[1] as string;
  let raced = false;
  const second = await encryptExisting({
    postgres: pg,
    ring,
    batch: 4,
    beforeWrite: async (rows) => {
      if (raced || !rows.some((r) => r.id === target)) return;
      raced = true;
      await bot.updateMessage('c', target, { content: 'SEALED-edit by a bot' });
    },
  });
  expect(raced).toBe(true);
  expect(second.done).toBe(true);
  expect(second.tables.messages.changedMeanwhile).toBe(1);
  // It resumed after the rows the first run went through.
  expect(second.tables.messages.read).toBe(USERS.length * 6 - 8);
  expect(first.tables.messages.sealed + second.tables.messages.sealed).toBe(USERS.length * 6 - 1);
  expect(second.tables.users.sealed).toBe(USERS.length);

  const after = await rawPostgres(databaseUrl(), n.schema);
  expect(after).not.toMatch(/PLAIN|SEALED|5550001111/);

  // Without allowPlaintext everything opens, the edit included.
  const strict = makeStore('write-through', n, { encryption: encryption() });
  cleanup.push(() => strict.close());
  for (const user of USERS) {
    const want = Array.from({ length: 6 }, (_, i) => (user === 'c' && i === 1 ? 'SEALED-edit by a bot' : `PLAIN-${user}-${i}`));
    expect((await strict.getHistory(user)).map((m) => m.content)).toEqual(want);
    expect((await strict.getHistory(user))[0]?.meta).toEqual({ note: `PLAIN-meta-${user}` });
    expect(await strict.getUserPhone(user)).toBe('+15550001111');
    expect(await strict.getBookingData(user)).toEqual({ what: `PLAIN-booking-${user}` });
    expect((await strict.listThreads(user)).threads[0]?.title).toBe(`PLAIN-title-${user}`);
    expect((await strict.getContext(user, { maxTokens: 100_000 })).summary).toBe('PLAIN-summary of 6');
  }
  // A third run finds nothing left to seal.
  const third = await encryptExisting({ postgres: pg, ring, batch: 100 });
  expect(third.done).toBe(true);
  expect(Object.values(third.tables).reduce((sum, t) => sum + t.sealed, 0)).toBe(0);
  // And a store that was not given the key cannot read any of it.
  const wrong = makeStore('postgres only', n, { encryption: { keys: { other: Buffer.alloc(32, 7) }, current: 'other' } });
  cleanup.push(() => wrong.close());
  await expect(wrong.getHistory('a')).rejects.toMatchObject({ code: ErrorCode.ENCRYPTION_KEY_MISSING });
}, 60_000);

it('the CLI: encrypt-existing seals what a store wrote in plaintext, drops the plaintext hot copies, and never prints a key', async () => {
  const n = names('encrypt existing cli');
  const plain = makeStore('write-through', n, { logger: false });
  cleanup.push(() => plain.close());
  for (let i = 0; i < 5; i++) await plain.addMemory('u', 'user', `PLAIN-${i}`);
  await plain.setUserPhone('u', '+15550001111');
  await plain.getHistory('u'); // a hot copy in Redis, in plaintext
  await plain.close();
  const cli = await BuiltCli.build();
  cleanup.push(() => cli.close());
  const base = { DATABASE_URL: databaseUrl(), REDIS_URL: redisUrl(), STORE_SCHEMA: n.schema, STORE_KEY_PREFIX: n.keyPrefix };
  const doctor = await cli.run(['doctor'], {
    ...base,
    STORE_ENCRYPTION_KEYS: `k0:${K2.toString('base64')},k1:${K1.toString('hex')}`,
    STORE_ENCRYPTION_CURRENT: 'k1',
  });
  expect(doctor.stdout).toContain('encryption: keys k0, k1 (current k1)');
  expect(doctor.stdout + doctor.stderr).not.toContain(K2.toString('base64'));
  expect(doctor.stdout + doctor.stderr).not.toContain(K1.toString('hex'));
  const missing = await cli.run(['encrypt-existing'], base);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('STORE_ENCRYPTION_KEYS');
  const key = K1.toString('base64');
  const done = await cli.run(['encrypt-existing', '--batch', '2'], { ...base, STORE_ENCRYPTION_KEYS: `k1:${key}` });
  expect(done.stderr).toBe('');
  expect(done.code).toBe(0);
  expect(done.stdout).toContain('messages: read 5 rows, sealed 5');
  expect(done.stdout).toContain('done');
  expect(done.stdout + done.stderr).not.toContain(key);
  expect(await rawPostgres(databaseUrl(), n.schema)).not.toMatch(/PLAIN|5550001111/);
  expect(await rawRedis(redisUrl(), n.keyPrefix)).not.toMatch(/PLAIN/);
  const strict = makeStore('write-through', n, { encryption: encryption() });
  cleanup.push(() => strict.close());
  expect((await strict.getHistory('u')).map((m) => m.content)).toEqual(['PLAIN-0', 'PLAIN-1', 'PLAIN-2', 'PLAIN-3', 'PLAIN-4']);
  expect(await strict.getUserPhone('u')).toBe('+15550001111');
}, 120_000);

it('a plaintext hot copy left in Redis from before is dropped and read again from PostgreSQL, not refused', async () => {
  const n = names('encrypt existing copies');
  const plain = makeStore('write-through', n, { logger: false });
  cleanup.push(() => plain.close());
  for (let i = 0; i < 3; i++) await plain.addMemory('u', 'user', `PLAIN-${i}`);
  await plain.setUserPhone('u', '+15550001111');
  expect(await plain.getHistory('u')).toHaveLength(3); // hot copies in Redis, in plaintext
  expect(await plain.getUserPhone('u')).toBe('+15550001111');
  await plain.close();
  const pg = adapter(n);
  await pg.connect();
  expect((await encryptExisting({ postgres: pg, ring: new KeyRing(encryption()), batch: 100 })).done).toBe(true);
  expect(await rawRedis(redisUrl(), n.keyPrefix)).toContain('PLAIN-0');
  const strict = makeStore('write-through', n, { encryption: encryption() });
  cleanup.push(() => strict.close());
  expect((await strict.getHistory('u')).map((m) => m.content)).toEqual(['PLAIN-0', 'PLAIN-1', 'PLAIN-2']);
  expect(await strict.getUserPhone('u')).toBe('+15550001111');
  await strict.getHistory('u'); // filled again, sealed
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(await rawRedis(redisUrl(), n.keyPrefix)).not.toMatch(/PLAIN|5550001111/);
});
