import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

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
  /** Reads a throwaway key under the prefix, changes it, and resolves how long its invalidation took to arrive; rejects after `timeoutMs`. */
  probe(timeoutMs: number): Promise<number>;
  close(): Promise<void>;
}

const CHANNEL = '__redis__:invalidate';
const HEARTBEAT_MS = 200;
/** Past this long without a word from Redis on the feed (a silent partition), copies stop serving. */
const SILENT_MS = 800;

/**
 * Redis server-assisted client-side caching in its default mode, on two connections of its own:
 * a subscriber to `__redis__:invalidate`, and a reader whose reads Redis remembers (`CLIENT
 * TRACKING ON REDIRECT <subscriber>`). The reads that fill the in-process tier go through the
 * reader (`reader()`), so Redis names to the subscriber each key such a read saw (scripts
 * included, a missing key too) the first time any client changes it, or it expires or is evicted
 * (and everything on a flush). Keys this process never read cost it nothing: unlike broadcast
 * mode, a write is reported only to the processes that hold what it changed, and only once per
 * read. Both connections speak RESP2 (under RESP3 the messages would come as push frames ioredis
 * does not hand out).
 *
 * It is live only while the subscriber is subscribed and the reader's tracking points at it,
 * until the first sign a message may have been missed: either connection closed (a cut, a Redis
 * restart, CLIENT KILL: a new reader is tracked afresh, a new subscriber has a new id the reader
 * is pointed at) or a heartbeat PING went unanswered. Between heartbeats
 * (every 200 ms), `recent` says whether Redis was heard from lately: copies serve only then, so a
 * silent partition stops them within a second even before the PING times out.
 */
export class RedisInvalidationFeed implements InvalidationFeed {
  readonly #sub: Redis;
  readonly #reader: Redis;
  readonly #prefix: string;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #probes = new Map<string, () => void>();
  /** The subscriber's client id once it is subscribed. */
  #subId: string | undefined;
  /** The subscriber id the reader's tracking was confirmed to point at, on its current connection. */
  #armedFor: string | undefined;
  /** Counts the reader's connections, so a confirmation meant for an earlier one is ignored. */
  #readerGen = 0;
  #live = false;
  #closed = false;
  #heardAt = 0;
  #beating = false;
  /** Why Redis refused tracking, once it did (the feed then gives up). */
  #refused: Error | undefined;
  #settle: (() => void) | undefined;
  readonly #settled = new Promise<void>((resolve) => (this.#settle = resolve));

  /**
   * `broadcast`: Redis reports every change of a key under the prefix, read or not (`BCAST`), and
   * the second connection only points tracking at the subscriber (a Cluster node's feed: the reads
   * go through the Cluster's own connections, see {@link ClusterInvalidationFeed}).
   */
  constructor(
    private readonly client: Redis,
    keyPrefix: string,
    private readonly listener: InvalidationListener,
    private readonly broadcast = false,
  ) {
    this.#prefix = `${keyPrefix}:{`;
    // ioredis 6 speaks RESP3 by default; `protocol` is unknown to ioredis 5, which speaks RESP2 anyway.
    const own = (name: string) =>
      client.duplicate({
        protocol: 2,
        autoResubscribe: false,
        autoResendUnfulfilledCommands: false,
        lazyConnect: true,
        enableOfflineQueue: false,
        connectionName: `tiered-conversation-store:${name}`,
        // A Cluster's node connections are never retried by themselves (the Cluster retries): this feed's must be.
        ...(broadcast ? { retryStrategy: (times: number) => Math.min(100 * times, 1000) } : {}),
      } as never);
    this.#sub = own('l1');
    this.#reader = own('l1-reads');
    this.#sub.on('error', () => {});
    this.#sub.on('ready', () => void this.#subscribe());
    this.#sub.on('close', () => {
      this.#subId = undefined;
      this.#update();
    });
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer[] | Buffer | null) => {
      if (channel.toString() === CHANNEL) this.#message(message);
    });
    this.#reader.on('error', () => {});
    this.#reader.on('ready', () => {
      this.#readerGen++;
      void this.#arm();
    });
    this.#reader.on('close', () => {
      this.#readerGen++;
      this.#armedFor = undefined;
      this.#update();
    });
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_MS).unref();
    this.#sub.connect().catch(() => {});
    this.#reader.connect().catch(() => {});
  }

  get live(): boolean {
    return this.#live;
  }

  get recent(): boolean {
    return this.#live && performance.now() - this.#heardAt < SILENT_MS;
  }

  /**
   * The connection for reads that fill the in-process tier (Redis reports what they saw), while
   * the feed is live; undefined otherwise (such a read then goes elsewhere and fills nothing).
   */
  reader(): Redis | undefined {
    return this.#live ? this.#reader : undefined;
  }

  settled(timeoutMs: number): Promise<void> {
    return settledWithin(this.#settled, timeoutMs);
  }

  probe(timeoutMs: number): Promise<number> {
    return probeFeed(this, this.client, this.#prefix, timeoutMs, async (key) => {
      if (!this.broadcast) await this.#reader.get(key); // Redis now remembers that this process read it
    });
  }

  /** Why Redis refused tracking, if it did. */
  get refusal(): Error | undefined {
    return this.#refused;
  }

  /** Resolves when Redis reports `key` changed (a probe's key); `stop` forgets it. */
  watch(key: string): Watch {
    const arrived = new Promise<void>((resolve) => this.#probes.set(key, resolve));
    return { arrived, stop: () => this.#probes.delete(key) };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#setLive(false);
    this.#sub.disconnect();
    this.#reader.disconnect();
  }

  /** The subscriber (re)connected: it has a new id, which the reader's tracking must point at before the feed is live. */
  async #subscribe(): Promise<void> {
    const sub = this.#sub;
    try {
      const id = String(await sub.client('ID'));
      await sub.subscribe(CHANNEL);
      if (this.#closed || sub.status !== 'ready') return;
      this.#subId = id;
      await this.#arm();
    } catch (error) {
      if (!this.#refusedBy(error)) sub.disconnect(true); // not live; a fresh connection tries again
    }
  }

  /** Points the reader's tracking at the subscriber (again, after either reconnected); live once Redis confirms. */
  async #arm(): Promise<void> {
    const reader = this.#reader;
    const id = this.#subId;
    const gen = this.#readerGen;
    if (this.#closed || id === undefined || reader.status !== 'ready' || this.#armedFor === id) return;
    try {
      await (this.broadcast
        ? reader.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'BCAST', 'PREFIX', this.#prefix)
        : reader.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', id));
      if (this.#closed || gen !== this.#readerGen || this.#subId !== id) return;
      this.#armedFor = id;
      this.#update();
    } catch (error) {
      if (!this.#refusedBy(error) && gen === this.#readerGen) reader.disconnect(true);
    }
  }

  /** Redis said no (CLIENT, SUBSCRIBE or tracking not allowed): asking again would not change that, so the feed gives up. */
  #refusedBy(error: unknown): boolean {
    if (this.#closed) return true;
    if (!(error instanceof Error) || error.name !== 'ReplyError') return false;
    this.#closed = true;
    this.#refused = error;
    clearInterval(this.#heartbeat);
    this.#setLive(false);
    this.#sub.disconnect();
    this.#reader.disconnect();
    this.listener.refused(error);
    this.#settle?.();
    return true;
  }

  async #beat(): Promise<void> {
    if (!this.#live || this.#beating) return;
    this.#beating = true;
    try {
      await this.#sub.ping();
      this.#heardAt = performance.now();
    } catch {
      if (this.#closed) return;
      this.#subId = undefined;
      this.#update();
      this.#sub.disconnect(true);
    } finally {
      this.#beating = false;
    }
  }

  #update(): void {
    this.#setLive(!this.#closed && this.#subId !== undefined && this.#armedFor === this.#subId && this.#reader.status === 'ready');
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

/** Resolves when `settled` does or `timeoutMs` passed, whichever comes first. */
async function settledWithin(settled: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([settled, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
}

/** A key a probe waits on. */
interface Watch {
  arrived: Promise<void>;
  stop(): void;
}

/**
 * How long a change takes to reach a feed: waits for the feed to be live, lets `prepare` make
 * Redis track a fresh key under the prefix, changes the key through `client` and resolves when
 * the feed reports it; rejects after `timeoutMs`.
 */
async function probeFeed(
  feed: { readonly live: boolean; readonly refusal: Error | undefined; watch(key: string): Watch },
  client: Redis | Cluster,
  prefix: string,
  timeoutMs: number,
  prepare: (key: string) => Promise<void>,
): Promise<number> {
  const started = performance.now();
  const key = `${prefix}l1-probe:${randomUUID()}}`;
  let watch: Watch | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = Date.now() + timeoutMs;
    while (!feed.live) {
      if (feed.refusal) throw feed.refusal;
      if (Date.now() > deadline) throw new Error(`the invalidation feed did not subscribe within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Watched once live: a Cluster's feed watches on the nodes it has by then.
    watch = feed.watch(key);
    await prepare(key);
    await client.set(key, '1', 'PX', 5000);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no invalidation arrived within ${timeoutMs} ms`)), Math.max(1, deadline - Date.now()));
    });
    await Promise.race([watch.arrived, timeout]);
    return performance.now() - started;
  } finally {
    clearTimeout(timer);
    watch?.stop();
    await client.del(key).catch(() => {});
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

/** How often a Cluster's feed has the client refresh its map of the nodes (see {@link ClusterInvalidationFeed}). */
const CLUSTER_REFRESH_MS = 1000;
const CLUSTER_EVENTS = ['+node', '-node', 'refresh', 'ready', 'close'] as const;

/**
 * A Redis Cluster's feed. Tracking is per node, so it runs a broadcast-mode feed on every node the
 * Cluster client knows, masters and replicas: a replica reports the changes it replicates, so the
 * one a failover promotes was heard from all along. It is live only while every one of them is
 * (and the client is ready); the set follows the client's nodes (`+node`, `-node`, a refresh of
 * the slots, which it asks for every second so that a failover no command of this process ran
 * into is met soon). Any node joining, leaving or reconnecting takes it out of live, so the
 * in-process tier drops its copies. Broadcast mode reports every change under the prefix to every
 * process, whether it read the key or not: the cost of not knowing which node a read went to.
 */
export class ClusterInvalidationFeed implements InvalidationFeed {
  readonly #feeds = new Map<string, RedisInvalidationFeed>();
  readonly #prefix: string;
  readonly #refresh: NodeJS.Timeout;
  readonly #onNodes = () => this.#sync();
  readonly #inner: InvalidationListener;
  #live = false;
  #closed = false;
  #refused: Error | undefined;
  #settle: (() => void) | undefined;
  readonly #settled = new Promise<void>((resolve) => (this.#settle = resolve));

  constructor(
    private readonly cluster: Cluster,
    private readonly keyPrefix: string,
    private readonly listener: InvalidationListener,
  ) {
    this.#prefix = `${keyPrefix}:{`;
    this.#inner = {
      users: (users) => listener.users(users),
      all: () => listener.all(),
      live: () => this.#update(),
      refused: (error) => this.#refuse(error),
    };
    for (const event of CLUSTER_EVENTS) cluster.on(event, this.#onNodes);
    this.#refresh = setInterval(() => {
      if (cluster.status === 'ready') cluster.refreshSlotsCache();
    }, CLUSTER_REFRESH_MS).unref();
    this.#sync();
  }

  get live(): boolean {
    return this.#live;
  }

  get recent(): boolean {
    return this.#live && [...this.#feeds.values()].every((feed) => feed.recent);
  }

  get refusal(): Error | undefined {
    return this.#refused;
  }

  /** Reads need no connection of their own in broadcast mode: the Cluster's, while the feed is live. */
  reader(): Cluster | undefined {
    return this.#live ? this.cluster : undefined;
  }

  settled(timeoutMs: number): Promise<void> {
    return settledWithin(this.#settled, timeoutMs);
  }

  probe(timeoutMs: number): Promise<number> {
    return probeFeed(this, this.cluster, this.#prefix, timeoutMs, async () => {});
  }

  /** The key's change as reported by whichever node holds it. */
  watch(key: string): Watch {
    const watches = [...this.#feeds.values()].map((feed) => feed.watch(key));
    return {
      arrived: Promise.race(watches.map((w) => w.arrived)),
      stop: () => {
        for (const w of watches) w.stop();
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stop();
  }

  /** Follows the client's nodes: a feed for each new one, none for those it dropped. */
  #sync(): void {
    if (this.#closed) return;
    const nodes = this.cluster.status === 'ready' ? this.cluster.nodes('all') : [];
    const current = new Set<string>();
    for (const node of nodes) {
      const name = `${node.options.host}:${node.options.port}`;
      current.add(name);
      if (!this.#feeds.has(name)) this.#feeds.set(name, new RedisInvalidationFeed(node, this.keyPrefix, this.#inner, true));
    }
    for (const [name, feed] of this.#feeds) {
      if (current.has(name)) continue;
      this.#feeds.delete(name);
      void feed.close();
    }
    this.#update();
  }

  #update(): void {
    const live = !this.#closed && this.cluster.status === 'ready' && this.#feeds.size > 0 && [...this.#feeds.values()].every((feed) => feed.live);
    if (this.#live === live) return;
    this.#live = live;
    if (live) this.#settle?.();
    this.listener.live(live);
  }

  #refuse(error: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#refused = error;
    this.#stop();
    this.listener.refused(error);
    this.#settle?.();
  }

  #stop(): void {
    clearInterval(this.#refresh);
    for (const event of CLUSTER_EVENTS) this.cluster.off(event, this.#onNodes);
    for (const feed of this.#feeds.values()) void feed.close();
    this.#feeds.clear();
    this.#update();
  }
}
