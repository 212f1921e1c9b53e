const MAIN = 'main';

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

  /**
   * History list of thread 'main', data hash, meta hash (version, floors), pending journal,
   * idempotency keys. The scripts derive the user's other keys from the meta hash's name (same
   * slot): `l` (set of the threads other than 'main' that may have a list), `t` (titles and
   * activity of threads, durable role), `c` (cut ranges per thread, durable role), `r` (drafts:
   * id -> flush time and latest item).
   */
  user(user: string): [h: string, d: string, m: string, j: string, i: string] {
    const base = `${this.prefix}:{${user}}`;
    return [`${base}:h`, `${base}:d`, `${base}:m`, `${base}:j`, `${base}:i`];
  }

  /**
   * The history list of one thread: 'main' keeps 0.1's key (so its copies and journals stay
   * readable); another thread gets `h:<thread>` in the same slot.
   */
  history(user: string, thread: string): string {
    return thread === MAIN ? `${this.prefix}:{${user}}:h` : `${this.prefix}:{${user}}:h:${thread}`;
  }

  /** The set of a user's threads other than 'main' that may hold a list, and the drafts hash. */
  threads(user: string): string {
    return `${this.prefix}:{${user}}:l`;
  }

  drafts(user: string): string {
    return `${this.prefix}:{${user}}:r`;
  }

  /** The durable role's summaries: a hash of thread -> summary record (see the write script's mark_summary). */
  summaries(user: string): string {
    return `${this.prefix}:{${user}}:y`;
  }

  /** The lease of a summary run of one thread (either role), in the user's slot. */
  summaryLease(user: string, thread: string): string {
    return `${this.prefix}:{${user}}:w:${thread}`;
  }

  /** Drafts of one shard by last flush time (member: draft id followed by the user), for the sweeper. Advisory. */
  draftIndex(shard: number): string {
    return `${this.prefix}:{drafts:${shard}}:z`;
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

  /** Patterns of every copy the cache role holds (lists of every thread, data, meta, thread sets), for invalidateAll's SCAN. */
  get copies(): string[] {
    return [`${this.prefix}:{*}:[hdml]`, `${this.prefix}:{*}:h:*`];
  }

  /** The user's data keys (encryption at rest): a hash of key id -> wrapped key or tombstone. Never a copy: it outlives invalidations and TTLs. */
  dataKeys(user: string): string {
    return `${this.prefix}:{${user}}:k`;
  }

  /** The pattern of every user's data keys, for a re-wrap pass's SCAN. */
  get allDataKeys(): string {
    return `${this.prefix}:{*}:k`;
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
