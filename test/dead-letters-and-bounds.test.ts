import { afterEach, describe, expect, it } from 'vitest';
import type { DeadLetter } from '../src/index.js';
import { OutageRig } from './helpers/outage.js';

let rig: OutageRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** Makes PostgreSQL refuse, for good, any message whose content is 'poison'. */
async function poison(r: OutageRig): Promise<void> {
  await r.store.syncNow(); // the store has migrated its schema
  await r.sql`alter table ${r.sql(`${r.names.schema}.messages`)} add constraint no_poison check (content <> 'poison')`;
}

describe('a write PostgreSQL refuses for good', () => {
  it('write-behind: is set aside as a dead letter and the rest of the journal moves on', async () => {
    rig = await OutageRig.start({ writeMode: 'write-behind' });
    await poison(rig);
    const letters: DeadLetter[] = [];
    rig.store.on('deadLetter', (letter) => letters.push(letter));
    await rig.write('u0', 'a');
    await rig.store.addMemory('u0', 'user', 'poison');
    await rig.write('u0', 'b');
    await rig.write('u1', 'c');
    const result = await rig.store.syncNow();
    expect(result).toMatchObject({ messages: 4, pending: 0 });
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ userId: 'u0', kind: 'append' });
    expect(letters[0]!.error.message).toMatch(/no_poison/);
    expect(rig.store.health().deadLetters).toBe(1);
    expect(rig.store.deadLetters()).toHaveLength(1);
    expect(rig.logs.some((l) => l.includes('dead letter'))).toBe(true);
    rig.acked.get('u0'); // 'a' and 'b' only
    const rows = await rig.sql`select content from ${rig.sql(`${rig.names.schema}.messages`)} where user_id = 'u0' order by id`;
    expect(rows.map((r) => r.content)).toEqual(['a', 'b']);
    await expect
      .poll(async () => (await rig!.sql`select user_id, kind, entry, error from ${rig!.sql(`${rig!.names.schema}.dead_letters`)}`).map((r) => ({ ...r })))
      .toEqual([{ user_id: 'u0', kind: 'append', entry: expect.stringContaining('"poison"'), error: expect.stringMatching(/no_poison/) }]);
  });

  it('both down: a held write PostgreSQL refuses on replay does not block the others', async () => {
    rig = await OutageRig.start();
    await poison(rig);
    await Promise.all([rig.redis.refuse(), rig.pg.refuse()]);
    await rig.write('u0', 'a');
    await rig.store.addMemory('u0', 'user', 'poison');
    await rig.write('u0', 'b');
    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    expect(rig.store.health().deadLetters).toBe(1);
    await rig.verify();
  });

  it('write-through: the caller gets the refusal, and no tier keeps the refused message', async () => {
    rig = await OutageRig.start();
    await poison(rig);
    await rig.write('u0', 'a');
    await rig.store.getHistory('u0');
    await expect(rig.store.addMemory('u0', 'user', 'poison')).rejects.toMatchObject({ code: 'TIER_ERROR', tier: 'postgres' });
    expect((await rig.store.getHistory('u0')).map((m) => m.content)).toEqual(['a']);
    await rig.verify();
  });
});

describe('bounded memory', () => {
  it('when every server is down the journal holds up to its limit, then refuses; nothing held is evicted', async () => {
    rig = await OutageRig.start({ journalLimit: 5 });
    await rig.writeMany(2, 1, 'before');
    await Promise.all([rig.redis.refuse(), rig.pg.refuse()]);
    await rig.writeMany(5, 1, 'held');
    await expect(rig.store.addMemory('u0', 'user', 'one too many')).rejects.toMatchObject({ code: 'STORE_FULL', name: 'UnavailableError' });
    expect(rig.store.health().pending).toBe(5);
    await Promise.all([rig.redis.pass(), rig.pg.pass()]);
    await rig.recovered();
    expect(await rig.verify()).toMatchObject({ acked: 7, stored: 7 });
  });
});
