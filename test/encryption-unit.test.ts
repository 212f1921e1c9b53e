import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../src/index.js';
import { isSealed, open, seal, sealedKeyId } from '../src/crypto/cipher.js';
import { DataKeys, type DataKeyRecord, type DataKeyStore, KeyRing } from '../src/crypto/keys.js';

// The cipher and the key ring as pure logic (no server): values bound to user and field, wraps
// bound to user and key id, coded errors that name ids and never keys, data keys made once per
// user and never reused below a delete.

const KEY = Buffer.alloc(32, 0xab);

describe('cipher', () => {
  it('opens what it sealed; the same plaintext seals differently each time', () => {
    const a = seal(KEY, 'K1', 'u1', 'content', 'héllo ✓');
    const b = seal(KEY, 'K1', 'u1', 'content', 'héllo ✓');
    expect(isSealed(a)).toBe(true);
    expect(a).not.toBe(b);
    expect(sealedKeyId(a)).toBe('K1');
    expect(open(KEY, 'u1', 'content', a)).toBe('héllo ✓');
    expect(open(KEY, 'u1', 'content', seal(KEY, 'K1', 'u1', 'content', ''))).toBe('');
  });

  it('another user, another field, another key or a flipped byte fails with DECRYPTION_FAILED', () => {
    const value = seal(KEY, 'K1', 'u1', 'phone', '+15551234567');
    for (const attempt of [
      () => open(KEY, 'u2', 'phone', value),
      () => open(KEY, 'u1', 'title', value),
      () => open(Buffer.alloc(32, 1), 'u1', 'phone', value),
      () => open(KEY, 'u1', 'phone', `${value.slice(0, -3)}${value.slice(-3) === 'AAA' ? 'BBB' : 'AAA'}`),
      () => open(KEY, 'u1', 'phone', 'enc:v1:K1:AAAA'),
    ]) {
      expect(attempt).toThrow(expect.objectContaining({ code: ErrorCode.DECRYPTION_FAILED }));
    }
    try {
      open(KEY, 'u2', 'phone', value);
    } catch (error) {
      expect((error as Error).message).not.toContain('5551234567');
      expect((error as Error).message).not.toContain(KEY.toString('hex'));
    }
  });
});

describe('key ring', () => {
  it('checks the option: 32-byte keys, valid ids, a configured current key; errors never show a key', () => {
    const bad = Buffer.alloc(16, 0xcd);
    const cases: [unknown, string][] = [
      [{ keys: { k: bad }, current: 'k' }, ErrorCode.INVALID_OPTION],
      [{ keys: { 'bad id!': KEY }, current: 'bad id!' }, ErrorCode.INVALID_OPTION],
      [{ keys: { k: KEY }, current: 'other' }, ErrorCode.ENCRYPTION_KEY_MISSING],
      [{ keys: { k: KEY }, current: 'k', allowPlaintext: 'yes' }, ErrorCode.INVALID_OPTION],
      [{ current: 'k' }, ErrorCode.INVALID_OPTION],
    ];
    for (const [options, code] of cases) {
      let error: (Error & { code?: string }) | undefined;
      try {
        new KeyRing(options as never);
      } catch (e) {
        error = e as Error & { code?: string };
      }
      expect(error?.code).toBe(code);
      for (const form of [bad, KEY].flatMap((k) => [k.toString('hex'), k.toString('base64')])) expect(error?.message).not.toContain(form);
    }
  });

  it('a wrap opens for its user and id only; a missing master key is named by id', () => {
    const ring = new KeyRing({ keys: { old: KEY, next: Buffer.alloc(32, 2) }, current: 'old' });
    const data = Buffer.alloc(32, 9);
    const record = ring.wrap('u1', 'D1', data);
    expect(record.master).toBe('old');
    expect(ring.unwrap('u1', record).equals(data)).toBe(true);
    expect(() => ring.unwrap('u2', record)).toThrow(expect.objectContaining({ code: ErrorCode.DECRYPTION_FAILED }));
    expect(() => ring.unwrap('u1', { ...record, id: 'D2' })).toThrow(expect.objectContaining({ code: ErrorCode.DECRYPTION_FAILED }));
    ring.use('next');
    expect(ring.wrap('u1', 'D1', data).master).toBe('next');
    const without = new KeyRing({ keys: { next: Buffer.alloc(32, 2) }, current: 'next' });
    expect(() => without.unwrap('u1', record)).toThrow(
      expect.objectContaining({ code: ErrorCode.ENCRYPTION_KEY_MISSING, message: expect.stringContaining("'old'") }),
    );
  });
});

/** A DataKeyStore in memory, counting calls. */
class KeysInMemory implements DataKeyStore {
  readonly users = new Map<string, Map<string, DataKeyRecord>>();
  saves = 0;
  reads = 0;
  async readDataKeys(user: string) {
    this.reads++;
    return [...(this.users.get(user)?.values() ?? [])];
  }
  async saveDataKey(user: string, record: DataKeyRecord) {
    this.saves++;
    const keys = this.users.get(user) ?? new Map<string, DataKeyRecord>();
    this.users.set(user, keys);
    if (!keys.has(record.id)) keys.set(record.id, record);
  }
  async destroyDataKeys(user: string, upTo: string) {
    for (const [id, record] of this.users.get(user) ?? [])
      if (id <= upTo) this.users.get(user)?.set(id, { ...record, master: '', wrapped: '', destroyed: upTo });
  }
  async staleDataKeys() {
    return { keys: [], cursor: null };
  }
  async rewrapDataKey() {
    return false;
  }
}

describe('data keys', () => {
  it('one key per user however many writes race for it; saved before use; a key above a delete when asked', async () => {
    const store = new KeysInMemory();
    const keys = new DataKeys(new KeyRing({ keys: { k: KEY }, current: 'k' }), store);
    const made = await Promise.all(Array.from({ length: 20 }, () => keys.forWrite('u1')));
    expect(new Set(made.map((k) => k.id)).size).toBe(1);
    expect(store.saves).toBe(1);
    expect(store.users.get('u1')?.has(made[0]!.id)).toBe(true);
    const after = `${made[0]!.id}Z`;
    const newer = await keys.forWrite('u1', after);
    expect(newer.id > after).toBe(true);
    await store.destroyDataKeys('u1', after);
    const reread = new DataKeys(new KeyRing({ keys: { k: KEY }, current: 'k' }), store);
    expect(await reread.forRead('u1', made[0]!.id)).toEqual({ destroyed: after });
    expect(Buffer.isBuffer(await reread.forRead('u1', newer.id))).toBe(true);
    await expect(reread.forRead('u2', newer.id)).rejects.toMatchObject({ code: ErrorCode.DATA_KEY_DESTROYED });
  });

  it("a key whose master key is not configured fails only the values under it; the user's other keys still open", async () => {
    const store = new KeysInMemory();
    const both = new KeyRing({ keys: { old: KEY, next: Buffer.alloc(32, 5) }, current: 'old' });
    await store.saveDataKey('u1', both.wrap('u1', 'A', Buffer.alloc(32, 1)));
    both.use('next');
    await store.saveDataKey('u1', both.wrap('u1', 'B', Buffer.alloc(32, 2)));
    const keys = new DataKeys(new KeyRing({ keys: { next: Buffer.alloc(32, 5) }, current: 'next' }), store);
    expect(await keys.forRead('u1', 'B')).toEqual(Buffer.alloc(32, 2));
    const old = await keys.forRead('u1', 'A');
    expect('unusable' in old && old.unusable).toMatchObject({ code: ErrorCode.ENCRYPTION_KEY_MISSING, message: expect.stringContaining("'old'") });
    expect((await keys.forWrite('u1')).id).toBe('B');
  });
});
