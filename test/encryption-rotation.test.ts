import { Redis } from 'ioredis';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { ErrorCode, type TieredStore } from '../src/index.js';
import { cleanups, K1, K2 } from './helpers/encryption.js';
import { databaseUrl, redisUrl, type Isolation } from './helpers/services.js';
import { makeStore } from './helpers/stores.js';

// Rotation of the master key under writers: rotateEncryptionKey switches new wraps to the new key
// at once and re-wraps every data key Redis and PostgreSQL hold; writes going on meanwhile (new
// users among them) all stay readable, and afterwards the old master key can be dropped.

const { cleanup, names } = cleanups();

/** Master key ids of every live data key, per tier. */
async function masters(n: Isolation): Promise<{ postgres: string[]; redis: string[] }> {
  const sql = postgres(databaseUrl(), { onnotice: () => {}, max: 1 });
  const redis = new Redis(redisUrl());
  try {
    const rows = await sql`select distinct master_id from ${sql(`${n.schema}.data_keys`)} where destroyed_by is null order by 1`;
    const found = new Set<string>();
    for (const key of await redis.keys(`${n.keyPrefix}:{*}:k`)) {
      for (const value of Object.values(await redis.hgetall(key))) {
        const parsed = JSON.parse(value) as { m?: string };
        if (parsed.m) found.add(parsed.m);
      }
    }
    return { postgres: rows.map((r) => r.master_id as string), redis: [...found].sort() };
  } finally {
    await sql.end({ timeout: 1 });
    redis.disconnect();
  }
}

describe.each(['write-through', 'write-behind'] as const)('%s', (topology) => {
  it('rotateEncryptionKey under writers: every data key ends under the new master key and everything opens without the old one', async () => {
    const n = names(`rotate ${topology}`);
    const before = makeStore(topology, n, { encryption: { keys: { k1: K1 }, current: 'k1' } });
    cleanup.push(() => before.close());
    const written = new Map<string, string[]>();
    const add = async (s: TieredStore, user: string, text: string) => {
      await s.addMemory(user, 'user', text);
      written.set(user, [...(written.get(user) ?? []), text]);
    };
    for (let i = 0; i < 20; i++) await add(before, `old${i % 10}`, `SECRET old ${i}`);
    await before.setUserPhone('old0', '+15551112222');
    await before.close();
    expect(await masters(n)).toEqual({ postgres: ['k1'], redis: ['k1'] });

    const s = makeStore(topology, n, { encryption: { keys: { k1: K1, k2: K2 }, current: 'k1' } });
    cleanup.push(() => s.close());
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        // Old users, and new users whose first key is made around the switch.
        await add(s, i % 2 === 0 ? `old${(w + i) % 10}` : `new${w}_${i}`, `SECRET w${w} ${i}`);
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await s.rotateEncryptionKey('k2');
    await new Promise((resolve) => setTimeout(resolve, 100));
    stop = true;
    await Promise.all(writers);
    await s.syncNow();
    expect(await masters(n)).toEqual({ postgres: ['k2'], redis: ['k2'] });
    await expect(s.rotateEncryptionKey('k3')).rejects.toMatchObject({ code: ErrorCode.ENCRYPTION_KEY_MISSING });
    await s.close();

    // The old master key is gone from the configuration: everything still opens.
    const after = makeStore(topology, n, { encryption: { keys: { k2: K2 }, current: 'k2' } });
    cleanup.push(() => after.close());
    for (const [user, texts] of written) {
      expect(
        (await after.getHistory(user, { limit: 1000 })).map((m) => m.content),
        user,
      ).toEqual(texts);
    }
    expect(await after.getUserPhone('old0')).toBe('+15551112222');
  }, 60_000);
});
