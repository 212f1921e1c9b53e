import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/** What an invalidation feed tells the in-process tier. */
export interface InvalidationListener {
  /** Keys of these users changed in Redis (a write by any process, an expiry, an eviction). */
  users(users: string[]): void;
  /** Redis dropped everything (FLUSHALL, FLUSHDB). */
  all(): void;
  /** The feed became reliable (subscribed with tracking on) or stopped being so (it may miss messages until it is live again). */
  live(live: boolean): void;
  /** Redis refused tracking (an ACL, a managed service): the feed gives up, and L1 never serves. */
  refused(error: Error): void;
}

/** Tells an in-process tier which users changed in Redis; see `RedisInvalidationFeed`. */
export interface InvalidationFeed {
  readonly live: boolean;
  /** Live and heard from lately (a message or a heartbeat's answer): a silent partition ends serving within a second. */
  readonly recent: boolean;
  /** Resolves once the feed is live, has given up, or `timeoutMs` passed. */
  settled(timeoutMs: number): Promise<void>;
  /** Writes a throwaway key under the prefix and resolves how long its invalidation took to arrive; rejects after `timeoutMs`. */
  probe(timeoutMs: number): Promise<number>;
  close(): Promise<void>;
}

const CHANNEL = '__redis__:invalidate';
const HEARTBEAT_MS = 200;
/** Past this long without a word from Redis on the feed (a silent partition), copies stop serving. */
const SILENT_MS = 800;

/**
 * Redis server-assisted client-side caching in broadcast mode, on a connection of its own: it runs
 * `CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>:{` and subscribes to
 * `__redis__:invalidate`, so Redis names every key under the store's prefix that any client
 * changes (scripts included), and every key that expires or is evicted. The connection speaks
 * RESP2 (under RESP3 the messages would come as push frames ioredis does not hand out).
 *
 * It is live only between a confirmed subscription and the first sign it may have missed a
 * message: the connection closed (a cut, a Redis restart, CLIENT KILL), or a heartbeat PING went
 * unanswered. Each (re)connect turns tracking on again before going live. Between heartbeats
 * (every 200 ms), `recent` says whether Redis was heard from lately: copies serve only then, so a
 * silent partition stops them within a second even before the PING times out.
 */
export class RedisInvalidationFeed implements InvalidationFeed {
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #probes = new Map<string, () => void>();
  #live = false;
  #closed = false;
  #heardAt = 0;
  #beating = false;
  /** Why Redis refused tracking, once it did (the feed then gives up). */
  #refused: Error | undefined;
  #settle: (() => void) | undefined;
  readonly #settled = new Promise<void>((resolve) => (this.#settle = resolve));

  constructor(
    private readonly client: Redis,
    keyPrefix: string,
    private readonly listener: InvalidationListener,
  ) {
    this.#prefix = `${keyPrefix}:{`;
    // ioredis 6 speaks RESP3 by default; `protocol` is unknown to ioredis 5, which speaks RESP2 anyway.
    this.#sub = client.duplicate({
      protocol: 2,
      autoResubscribe: false,
      lazyConnect: true,
      enableOfflineQueue: false,
      connectionName: 'tiered-conversation-store:l1',
    } as never);
    this.#sub.on('error', () => {});
    this.#sub.on('ready', () => void this.#track());
    this.#sub.on('close', () => this.#down());
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer[] | Buffer | null) => {
      if (channel.toString() === CHANNEL) this.#message(message);
    });
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_MS).unref();
    this.#sub.connect().catch(() => {});
  }

  get live(): boolean {
    return this.#live;
  }

  get recent(): boolean {
    return this.#live && performance.now() - this.#heardAt < SILENT_MS;
  }

  async settled(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#settled, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  async probe(timeoutMs: number): Promise<number> {
    const started = performance.now();
    const key = `${this.#prefix}l1-probe:${randomUUID()}}`;
    const arrived = new Promise<void>((resolve) => this.#probes.set(key, resolve));
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline = Date.now() + timeoutMs;
      while (!this.#live) {
        if (this.#refused) throw this.#refused;
        if (Date.now() > deadline) throw new Error(`the invalidation feed did not subscribe within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await this.client.set(key, '1', 'PX', 5000);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no invalidation arrived within ${timeoutMs} ms`)), Math.max(1, deadline - Date.now()));
      });
      await Promise.race([arrived, timeout]);
      return performance.now() - started;
    } finally {
      clearTimeout(timer);
      this.#probes.delete(key);
      await this.client.del(key).catch(() => {});
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#setLive(false);
    this.#sub.disconnect();
  }

  async #track(): Promise<void> {
    const sub = this.#sub;
    try {
      const id = await sub.client('ID');
      await sub.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'BCAST', 'PREFIX', this.#prefix);
      await sub.subscribe(CHANNEL);
      if (!this.#closed && sub.status === 'ready') this.#setLive(true);
    } catch (error) {
      if (this.#closed) return;
      if (error instanceof Error && error.name === 'ReplyError') {
        // Redis said no (CLIENT or SUBSCRIBE not allowed): asking again would not change that.
        this.#closed = true;
        this.#refused = error;
        clearInterval(this.#heartbeat);
        sub.disconnect();
        this.listener.refused(error);
        this.#settle?.();
        return;
      }
      // Not live; a fresh connection tries again.
      sub.disconnect(true);
    }
  }

  async #beat(): Promise<void> {
    if (!this.#live || this.#beating) return;
    this.#beating = true;
    try {
      await this.#sub.ping();
      this.#heardAt = performance.now();
    } catch {
      if (this.#closed) return;
      this.#down();
      this.#sub.disconnect(true);
    } finally {
      this.#beating = false;
    }
  }

  #down(): void {
    this.#setLive(false);
  }

  #setLive(live: boolean): void {
    if (this.#live === live) return;
    this.#live = live;
    this.#heardAt = performance.now();
    if (live) this.#settle?.();
    this.listener.live(live);
  }

  #message(message: Buffer[] | Buffer | null): void {
    this.#heardAt = performance.now();
    if (message === null || !Array.isArray(message)) {
      // A flush (null), or a payload this code does not understand: drop everything to be safe.
      this.listener.all();
      return;
    }
    const users = new Set<string>();
    for (const raw of message) {
      const key = raw.toString();
      const probe = this.#probes.get(key);
      if (probe) probe();
      const user = userOfKey(key, this.#prefix);
      if (user !== undefined) users.add(user);
    }
    if (users.size > 0) this.listener.users([...users]);
  }
}

/** The user whose key `key` is (`<prefix>:{<user>}:...`); undefined for the shared keys (their tags hold a colon). */
export function userOfKey(key: string, prefix: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const end = key.indexOf('}', prefix.length);
  if (end < 0) return undefined;
  const tag = key.slice(prefix.length, end);
  return tag.includes(':') || tag.length === 0 ? undefined : tag;
}
