import { Redis } from 'ioredis';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { ErrorCode, PostgresAdapter, RedisAdapter, TieredStore, type TieredStoreOptions } from '../src/index.js';
import { encryptionFromEnv } from '../src/env.js';
import { cleanups, encryption, K1, K2, rawPostgres, rawRedis } from './helpers/encryption.js';
import { databaseUrl, redisUrl, type Isolation } from './helpers/services.js';
import { durableConfig, makeStore, type Topology } from './helpers/stores.js';

// Encryption at rest on the real servers: what reaches Redis, PostgreSQL and Redis's journal is
// ciphertext in every layout, reads give the plaintext back, a ciphertext moved to another user or
// field does not open, deleteUser makes copies of the user's rows unreadable, and plaintext left
// from before is refused unless allowPlaintext.

const { cleanup, names } = cleanups();

function store(topology: Topology, n: Isolation, options: TieredStoreOptions = {}): TieredStore {
  const s = makeStore(topology, n, { encryption: encryption(), ...options });
  cleanup.push(() => s.close());
  return s;
}

function sqlClient() {
  const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
  cleanup.push(() => sql.end({ timeout: 1 }));
  return sql;
}

/** Strings that must never reach a server as they are. */
const SECRETS = ['SECRET-content', 'SECRET-meta', '5559876543', 'SECRET-booking', 'SECRET-title', 'SECRET-summary', 'SECRET-draft', 'SECRET-edit'];

const summarize = () => 'SECRET-summary';

/** One of every sealed field, written and read back. */
async function writeEverything(s: TieredStore, user: string): Promise<void> {
  await s.addMemory(user, 'user', 'SECRET-content one', { meta: { note: 'SECRET-meta' } });
  const second = await s.addMemory(user, 'assistant', 'SECRET-content two', { thread: 't1' });
  await s.updateMessage(user, second.id, { content: 'SECRET-edit two' });
  await s.setUserPhone(user, '+1 555 987 6543');
  await s.setBookingData(user, { service: 'SECRET-booking' });
  await s.setThreadTitle(user, 't1', 'SECRET-title');
  const draft = await s.startDraft(user, 'assistant');
  draft.update('SECRET-draft partial');
  await draft.finish('SECRET-draft done');
  await s.summarizeNow(user);
}

async function readsBack(s: TieredStore, user: string): Promise<void> {
  const main = await s.getHistory(user);
  expect(main.map((m) => m.content)).toEqual(['SECRET-content one', 'SECRET-draft done']);
  expect(main[0]?.meta).toEqual({ note: 'SECRET-meta' });
  expect(main[0]?.tokens).toBe(Math.ceil(Buffer.byteLength('SECRET-content one') / 4) + 4);
  expect((await s.getHistory(user, { thread: 't1' })).map((m) => m.content)).toEqual(['SECRET-edit two']);
  expect(await s.getUserPhone(user)).toBe('+15559876543');
  expect(await s.getBookingData(user)).toEqual({ service: 'SECRET-booking' });
  const threads = (await s.listThreads(user)).threads;
  expect(threads.find((t) => t.id === 't1')?.title).toBe('SECRET-title');
  expect((await s.getContext(user, { maxTokens: 10_000 })).summary).toBe('SECRET-summary');
  const exported = await s.exportUser(user);
  expect(exported.phone).toBe('+15559876543');
  expect(exported.threads.find((t) => t.id === 't1')).toMatchObject({
    title: 'SECRET-title',
    messages: [expect.objectContaining({ content: 'SECRET-edit two' })],
  });
}

function noPlaintext(raw: string, where: string): void {
  for (const secret of SECRETS) expect(raw.includes(secret), `${where} holds '${secret}' in plaintext`).toBe(false);
  expect(raw, `${where} holds no ciphertext at all`).toContain('enc:v1:');
}

describe.each(['redis only', 'postgres only', 'write-through', 'write-behind'] as Topology[])('%s', (topology) => {
  it('Redis keys and PostgreSQL rows hold ciphertext only; reads give the plaintext back, in this process and another', async () => {
    const n = names(`enc ${topology}`);
    const s = store(topology, n, { summarize, summarizeAfterTokens: 1_000_000 });
    await writeEverything(s, 'u1');
    await readsBack(s, 'u1');
    if (topology === 'write-behind') {
      // Before the sync, Redis's journal holds every write: sealed too.
      noPlaintext(await rawRedis(redisUrl(), n.keyPrefix), 'Redis (journal pending)');
    }
    await s.syncNow();
    if (topology !== 'postgres only') noPlaintext(await rawRedis(redisUrl(), n.keyPrefix), 'Redis');
    if (topology !== 'redis only') noPlaintext(await rawPostgres(databaseUrl(), n.schema), 'PostgreSQL');
    const other = store(topology, n);
    await readsBack(other, 'u1');
    // Reading a user who has nothing makes no data key anywhere.
    expect(await other.getHistory('nobody')).toEqual([]);
    expect(await other.getUserPhone('nobody')).toBeNull();
    if (topology !== 'postgres only') expect(await rawRedis(redisUrl(), n.keyPrefix)).not.toContain('{nobody}:k');
    if (topology !== 'redis only') expect(await rawPostgres(databaseUrl(), n.schema)).not.toContain('nobody');
  });
});

describe('with the in-process tier (L1)', () => {
  it.each(['redis only', 'write-through'] as Topology[])(
    '%s: L1 runs above the seal: hot reads hit it with plaintext, and a write by another process is seen',
    async (topology) => {
      const n = names(`enc l1 ${topology}`);
      const [a, b] = [store(topology, n), store(topology, n)];
      await a.addMemory('u1', 'user', 'SECRET-content one');
      await b.getHistory('u1');
      expect((await b.getHistory('u1')).map((m) => m.content)).toEqual(['SECRET-content one']);
      expect(b.stats().l1).toMatchObject({ enabled: true });
      expect(b.stats().l1.hits).toBeGreaterThan(0);
      await a.addMemory('u1', 'assistant', 'SECRET-content two');
      // The other process's copy is invalidated through the feed: its next reads see the write.
      await expect.poll(async () => (await b.getHistory('u1')).map((m) => m.content), { timeout: 5000 }).toEqual(['SECRET-content one', 'SECRET-content two']);
      noPlaintext(await rawRedis(redisUrl(), n.keyPrefix), 'Redis');
    },
  );
});

describe('crypto-shredding', () => {
  it('PostgreSQL: rows copied aside before deleteUser and put back afterwards cannot be read', async () => {
    const n = names('enc shred pg');
    const s = store('postgres only', n);
    await writeEverything(s, 'u1');
    await s.addMemory('u2', 'user', 'SECRET-content of u2');
    const sql = sqlClient();
    const tables = ['messages', 'users', 'threads'];
    const copies = new Map<string, postgres.Row[]>();
    for (const table of tables) copies.set(table, await sql`select * from ${sql(`${n.schema}.${table}`)} where user_id = 'u1'`);
    await s.deleteUser('u1');
    // The backup goes back in place of what deleteUser left.
    for (const table of tables) {
      await sql`delete from ${sql(`${n.schema}.${table}`)} where user_id = 'u1'`;
      const rows = copies.get(table)!;
      if (rows.length > 0) await sql`insert into ${sql(`${n.schema}.${table}`)} ${sql(rows)}`;
    }
    const other = store('postgres only', n);
    await expect(other.getHistory('u1')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
    await expect(other.getUserPhone('u1')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
    await expect(other.listThreads('u1')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
    // Other users are untouched, and the deleted user starts afresh under a new key.
    expect((await other.getHistory('u2')).map((m) => m.content)).toEqual(['SECRET-content of u2']);
    await sql`delete from ${sql(`${n.schema}.messages`)} where user_id = 'u1'`;
    await other.addMemory('u1', 'user', 'SECRET-content again');
    expect((await other.getHistory('u1')).map((m) => m.content)).toEqual(['SECRET-content again']);
  });

  it('Redis alone: keys copied aside (DUMP) before deleteUser and restored afterwards cannot be read', async () => {
    const n = names('enc shred redis');
    const s = store('redis only', n);
    await writeEverything(s, 'u1');
    const redis = new Redis(redisUrl());
    cleanup.push(() => redis.quit());
    const keys = (await redis.keys(`${n.keyPrefix}:{u1}:*`)).filter((k) => !k.endsWith(':k'));
    expect(keys.length).toBeGreaterThan(0);
    const dumps = await Promise.all(keys.map(async (k) => [k, await redis.dumpBuffer(k)] as const));
    await s.deleteUser('u1');
    for (const [key, dump] of dumps) if (dump) await redis.restore(key, 0, dump, 'REPLACE');
    const other = store('redis only', n);
    await expect(other.getHistory('u1')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
    await expect(other.getUserPhone('u1')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
  });

  it('write-behind: a deleteUser synced in one batch with writes before and after it keeps the later ones readable, and nothing earlier comes back', async () => {
    const n = names('enc shred journal');
    const s = store('write-behind', n);
    await writeEverything(s, 'u1');
    // PostgreSQL's side has the user's key in hand: the write after the delete must not be sealed with it.
    await s.syncNow();
    await s.addMemory('u1', 'user', 'SECRET-content before');
    await s.deleteUser('u1');
    await s.addMemory('u1', 'user', 'SECRET-content after');
    await s.syncNow();
    expect(s.deadLetters()).toEqual([]);
    const other = store('postgres only', n);
    expect((await other.getHistory('u1')).map((m) => m.content)).toEqual(['SECRET-content after']);
    expect(await other.getUserPhone('u1')).toBeNull();
  });
});

describe('binding and keys', () => {
  it("two processes making a new user's first key at once: both keys are kept and everything stays readable", async () => {
    const n = names('enc two keys');
    const [a, b] = [store('postgres only', n), store('postgres only', n)];
    const users = Array.from({ length: 10 }, (_, i) => `fresh${i}`);
    await a.getHistory('warm');
    await b.getHistory('warm');
    await Promise.all(users.flatMap((user) => [a.addMemory(user, 'user', 'SECRET-content from a'), b.addMemory(user, 'user', 'SECRET-content from b')]));
    const third = store('postgres only', n);
    for (const user of users) {
      expect((await third.getHistory(user)).map((m) => m.content).sort()).toEqual(['SECRET-content from a', 'SECRET-content from b']);
    }
    // Whatever the race above did: each tier keeps every key it is given for a user.
    const pg = new PostgresAdapter({ url: databaseUrl(), schema: n.schema });
    const redis = new RedisAdapter({ url: redisUrl(), keyPrefix: n.keyPrefix });
    for (const adapter of [pg, redis]) {
      adapter.bind(durableConfig());
      cleanup.push(() => adapter.close());
      await adapter.connect();
      await adapter.saveDataKey('x', { id: 'K1', master: 'm', wrapped: 'w1' });
      await adapter.saveDataKey('x', { id: 'K2', master: 'm', wrapped: 'w2' });
      await adapter.saveDataKey('x', { id: 'K1', master: 'm', wrapped: 'other' }); // a repeat changes nothing
      expect(await adapter.readDataKeys('x'), adapter.name).toEqual([
        { id: 'K1', master: 'm', wrapped: 'w1' },
        { id: 'K2', master: 'm', wrapped: 'w2' },
      ]);
    }
  });

  it('a ciphertext moved to another user, or to another field, fails with a coded error', async () => {
    const n = names('enc moved');
    const s = store('postgres only', n);
    await s.addMemory('alice', 'user', 'SECRET-content of alice');
    await s.addMemory('bob', 'user', 'bob says hi');
    await s.setUserPhone('alice', '+15559876543');
    await s.setThreadTitle('alice', 'main', 'a title');
    const sql = sqlClient();
    const messages = sql(`${n.schema}.messages`);
    const [row] = await sql`select content from ${messages} where user_id = 'alice'`;
    await sql`update ${messages} set content = ${row?.content as string} where user_id = 'bob'`;
    await expect(s.getHistory('bob')).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
    // Same user, another field: alice's phone ciphertext put in her thread title.
    const [user] = await sql`select phone from ${sql(`${n.schema}.users`)} where user_id = 'alice'`;
    await sql`update ${sql(`${n.schema}.threads`)} set title = ${user?.phone as string} where user_id = 'alice'`;
    const other = store('postgres only', n);
    await expect(other.listThreads('alice')).rejects.toMatchObject({ code: ErrorCode.DECRYPTION_FAILED });
  });

  it("write-through: a value moved into another user's hot copy in Redis never shows; the copy is replaced from PostgreSQL", async () => {
    const n = names('enc moved redis');
    const s = store('write-through', n);
    await s.addMemory('alice', 'user', 'SECRET-content of alice');
    await s.addMemory('bob', 'user', 'bob says hi');
    await s.getHistory('alice');
    await s.getHistory('bob');
    const redis = new Redis(redisUrl());
    cleanup.push(() => redis.quit());
    const [item] = await redis.lrange(`${n.keyPrefix}:{alice}:h`, 0, 0);
    expect(item).toContain('enc:v1:');
    await redis.lset(`${n.keyPrefix}:{bob}:h`, 0, item as string);
    expect((await s.getHistory('bob')).map((m) => m.content)).toEqual(['bob says hi']);
    await s.getHistory('bob'); // the refill
    await expect.poll(async () => (await redis.lrange(`${n.keyPrefix}:{bob}:h`, 0, -1)).some((i) => i === item)).toBe(false);
  });

  it('a master key id that is not configured is a coded error naming the id, never the key', async () => {
    const n = names('enc missing');
    const s = store('postgres only', n);
    await s.addMemory('u1', 'user', 'SECRET-content');
    const other = store('postgres only', n, { encryption: { keys: { k2: K2 }, current: 'k2' } });
    const error = await other.getHistory('u1').catch((e: unknown) => e as Error & { code: string });
    expect(error).toMatchObject({ code: ErrorCode.ENCRYPTION_KEY_MISSING });
    expect((error as Error).message).toContain("'k1'");
    for (const form of [K1, K2].flatMap((k) => [k.toString('hex'), k.toString('base64')])) expect((error as Error).message).not.toContain(form);
    expect(() => new TieredStore({ logger: false, encryption: { keys: { k1: K1 }, current: 'k9' } })).toThrow(
      expect.objectContaining({ code: ErrorCode.ENCRYPTION_KEY_MISSING }),
    );
    expect(() => new TieredStore({ logger: false, encryption: { keys: { k1: Buffer.alloc(16) }, current: 'k1' } })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_OPTION }),
    );
  });

  it('rollout: plaintext written before encryption is refused with a coded error unless allowPlaintext', async () => {
    const n = names('enc rollout');
    const before = makeStore('write-through', n, { logger: false });
    cleanup.push(() => before.close());
    await before.addMemory('u1', 'user', 'old plaintext');
    await before.setUserPhone('u1', '+15550001111');
    await before.close();
    const strict = store('postgres only', n);
    await expect(strict.getHistory('u1')).rejects.toMatchObject({ code: ErrorCode.PLAINTEXT_REFUSED });
    await expect(strict.getUserPhone('u1')).rejects.toMatchObject({ code: ErrorCode.PLAINTEXT_REFUSED });
    const rollout = store('write-through', n, { encryption: encryption({ allowPlaintext: true }) });
    expect((await rollout.getHistory('u1')).map((m) => m.content)).toEqual(['old plaintext']);
    expect(await rollout.getUserPhone('u1')).toBe('+15550001111');
    await rollout.addMemory('u1', 'user', 'SECRET-content new');
    expect((await rollout.getHistory('u1')).map((m) => m.content)).toEqual(['old plaintext', 'SECRET-content new']);
    expect(await rawPostgres(databaseUrl(), n.schema)).not.toContain('SECRET-content');
  });
});

describe('keys from the environment (the CLI, fromEnv)', () => {
  it('STORE_ENCRYPTION_KEYS gives the keys (base64 or hex), the current one and the rollout flag; a bad key is named by id, never shown', () => {
    const env = { STORE_ENCRYPTION_KEYS: `k1:${K1.toString('base64')}, k2:${K2.toString('hex')}`, STORE_ENCRYPTION_ALLOW_PLAINTEXT: '1' };
    const options = encryptionFromEnv(env);
    expect(options?.current).toBe('k2');
    expect(options?.allowPlaintext).toBe(true);
    expect(Buffer.from(options?.keys.k1 ?? []).equals(K1)).toBe(true);
    expect(Buffer.from(options?.keys.k2 ?? []).equals(K2)).toBe(true);
    expect(encryptionFromEnv({ ...env, STORE_ENCRYPTION_CURRENT: 'k1' })?.current).toBe('k1');
    expect(encryptionFromEnv({})).toBeUndefined();
    const short = K1.subarray(0, 16).toString('base64');
    const error = (() => {
      try {
        encryptionFromEnv({ STORE_ENCRYPTION_KEYS: `bad:${short}` });
      } catch (e) {
        return e as Error & { code: string };
      }
    })();
    expect(error).toMatchObject({ code: ErrorCode.INVALID_OPTION });
    expect(error?.message).toContain("'bad'");
    expect(error?.message).not.toContain(short);
    expect(TieredStore.fromEnv({ ...env }, { logger: false })).toBeInstanceOf(TieredStore);
  });
});
