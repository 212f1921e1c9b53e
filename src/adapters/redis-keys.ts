/**
 * Where everything lives in Redis. One user's keys share a `{user}` hash tag, so a Cluster keeps
 * them in one slot and a script can change them atomically. The keys every user touches (the
 * subscriber set and the index of users with pending writes) are split into shards, each with its
 * own hash tag, so on a Cluster they spread over the masters instead of heating one slot.
 */
export class RedisKeys {
  constructor(
    readonly prefix: string,
    readonly shards: number,
  ) {}

  /** History list, data hash, meta hash (version, floors), pending journal, idempotency keys. */
  user(user: string): [h: string, d: string, m: string, j: string, i: string] {
    const base = `${this.prefix}:{${user}}`;
    return [`${base}:h`, `${base}:d`, `${base}:m`, `${base}:j`, `${base}:i`];
  }

  shardOf(user: string): number {
    if (this.shards === 1) return 0;
    // FNV-1a: cheap and even enough to spread users over a few shards.
    let hash = 0x811c9dc5;
    for (let i = 0; i < user.length; i++) hash = Math.imul(hash ^ user.charCodeAt(i), 0x01000193);
    return (hash >>> 0) % this.shards;
  }

  /** Subscriber set and its version, of one shard. */
  subscribers(shard: number): [set: string, version: string] {
    const base = `${this.prefix}:{subs:${shard}}`;
    return [`${base}:s`, `${base}:v`];
  }

  /**
   * The pending index of one shard: a hash of user -> journal entries not yet acknowledged, their
   * sum, and (on a Cluster) when a count with no entries behind it was first seen. 0.1 kept a set
   * under `dirty` and a counter under `pending`; the syncer's backstop indexes journals it left.
   */
  pending(shard: number): [index: string, count: string, idle: string] {
    const base = `${this.prefix}:{sync:${shard}}`;
    return [`${base}:queue`, `${base}:queued`, `${base}:idle`];
  }

  /** The pattern of every user's journal key, for the backstop's SCAN. */
  get journals(): string {
    return `${this.prefix}:{*}:j`;
  }

  /** The user whose journal `key` is (see `journals`). */
  userOfJournal(key: string): string {
    return key.slice(this.prefix.length + 2, -3);
  }

  /** The background sync lease (one key: it changes once per pass, not per write). */
  get lock(): string {
    return `${this.prefix}:{sync}:lock`;
  }

  shardList(): number[] {
    return Array.from({ length: this.shards }, (_, i) => i);
  }
}
