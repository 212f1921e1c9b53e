import { expect } from 'vitest';
import type { RedisAdapter } from '../../src/index.js';
import { RedisKeys } from '../../src/adapters/redis-keys.js';
import type { CacheAdapter, ContractContext, ContractOptions } from '../../src/testing.js';

/** The keys of `adapter` (built with the default number of shards). */
function keysOf(adapter: RedisAdapter): RedisKeys {
  return new RedisKeys(adapter.keyPrefix, adapter.cluster ? 16 : 1);
}

/** What the contract needs beyond the adapter's own methods to check a RedisAdapter (one Redis or a Cluster). */
export const redisContractOptions: Pick<ContractOptions, 'dropFromIndex' | 'additionalTests'> = {
  /** As a crash or 0.1 (which kept a set) could leave it: the user's journal is there, the index does not point to it. */
  async dropFromIndex(cache: CacheAdapter, user: string) {
    const adapter = cache as RedisAdapter;
    const [index, count] = keysOf(adapter).pending(keysOf(adapter).shardOf(user));
    const counted = Number(await adapter.client.hget(index, user));
    await adapter.client.hdel(index, user);
    await adapter.client.decrby(count, counted);
  },
  additionalTests(c: ContractContext) {
    if (!c.groups.includes('journal')) return;
    c.it(
      'reads an unreadable journal entry as an error with its raw text, and acknowledges it',
      c.withAdapter<RedisAdapter>(async (adapter) => {
        const u = c.user();
        const op = c.append(u, 'readable');
        await adapter.write([op], { pending: true });
        const journal = keysOf(adapter).user(u)[3];
        await adapter.client.rpush(journal, '{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","kind":"from-the-future"}', 'not json');
        const [readable, unknown, garbage] = (await adapter.readJournals([u], 0)).get(u) ?? [];
        expect(readable).toMatchObject({ op });
        expect(unknown).toMatchObject({ op: undefined, error: expect.objectContaining({ code: 'UNREADABLE_ENTRY' }) });
        // Neither JSON nor a compact message: unreadable too.
        expect(garbage).toMatchObject({ op: undefined, error: expect.objectContaining({ code: 'UNREADABLE_ENTRY' }), raw: 'not json' });
        expect(await adapter.ack(u, [readable!.raw, unknown!.raw, garbage!.raw])).toBe(0);
        expect(await adapter.client.llen(journal)).toBe(0);
      }, 'cache'),
    );
  },
};
