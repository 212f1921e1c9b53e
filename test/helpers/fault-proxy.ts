import net from 'node:net';

export type FaultMode = 'pass' | 'refuse' | 'hang';

export interface ProxyTarget {
  host: string;
  port: number;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket | null;
  hung: boolean;
}

const LISTEN_HOST = '127.0.0.1';
const DEFAULT_PORTS: Record<string, number> = {
  'redis:': 6379,
  'rediss:': 6379,
  'postgres:': 5432,
  'postgresql:': 5432,
};

const ignore = (): void => {};

/**
 * A TCP proxy on 127.0.0.1 placed between a client and a real server so that
 * tests can inject real network faults: refused connects, resets and silent hangs.
 *
 * Mode changes are async (they may close or reopen the listener) and are applied
 * in call order.
 */
export class FaultProxy {
  readonly target: ProxyTarget;
  #port = 0;
  #mode: FaultMode = 'pass';
  #server: net.Server | null = null;
  #closed = false;
  #transitions: Promise<void> = Promise.resolve();
  readonly #links = new Set<Link>();
  readonly #sockets = new Set<net.Socket>();

  private constructor(target: ProxyTarget) {
    this.target = target;
  }

  static async start(target: ProxyTarget | string): Promise<FaultProxy> {
    const proxy = new FaultProxy(typeof target === 'string' ? parseTarget(target) : target);
    await proxy.#listen(0);
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /** Live client connections (hung ones included). */
  get connections(): number {
    return this.#links.size;
  }

  /** The same URL (user, password, path, query kept) pointing at the proxy. */
  url(originalUrl: string): string {
    const url = new URL(originalUrl);
    url.hostname = LISTEN_HOST;
    url.port = String(this.#port);
    return url.toString();
  }

  /**
   * Forward normally. Leaving `hang` resets the connections that were hanging, unless
   * `keepHung`: then they stay silent forever, like sockets into a black hole, and only new
   * connections work (a client must replace its hung connections to recover).
   */
  pass(options: { keepHung?: boolean } = {}): Promise<void> {
    return this.#transition(async () => {
      if (!options.keepHung) for (const link of this.#links) if (link.hung) this.#drop(link, 'reset');
      this.#mode = 'pass';
      await this.#ensureListening();
    });
  }

  /**
   * Like a stopped server: the listener closes, so connects get ECONNREFUSED,
   * and live connections are closed.
   */
  refuse(): Promise<void> {
    return this.#transition(async () => {
      this.#mode = 'refuse';
      this.#stopListening();
      for (const link of this.#links) this.#drop(link, 'close');
    });
  }

  /**
   * Like a broken network path: every live connection is reset (RST).
   * New connections are accepted and forwarded, so the proxy ends in `pass`.
   */
  cut(): Promise<void> {
    return this.#transition(async () => {
      for (const link of this.#links) this.#drop(link, 'reset');
      this.#mode = 'pass';
      await this.#ensureListening();
    });
  }

  /**
   * Like a silent partition: connects still succeed, but nothing is forwarded
   * or answered in either direction, for new and live connections alike.
   */
  hang(): Promise<void> {
    return this.#transition(async () => {
      this.#mode = 'hang';
      await this.#ensureListening();
      for (const link of this.#links) this.#hangLink(link);
    });
  }

  /** Closes the listener and every socket. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Not queued behind transitions, so cleanup works even if one is stuck.
    this.#stopListening();
    for (const socket of this.#sockets) socket.destroy();
    this.#links.clear();
  }

  #transition(step: () => Promise<void>): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('FaultProxy is closed'));
    const next = this.#transitions.then(step);
    this.#transitions = next.catch(ignore);
    return next;
  }

  async #ensureListening(): Promise<void> {
    if (!this.#server) await this.#listen(this.#port);
  }

  #listen(port: number): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, LISTEN_HOST, () => {
        server.off('error', reject);
        server.on('error', ignore);
        if (this.#closed) {
          server.close();
          resolve();
          return;
        }
        this.#server = server;
        this.#port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  #stopListening(): void {
    // close() stops accepting at once; its callback would also wait for live
    // connections, which the caller destroys itself.
    this.#server?.close();
    this.#server = null;
  }

  #accept(client: net.Socket): void {
    this.#track(client);
    if (this.#closed || this.#mode === 'refuse') {
      client.destroy();
      return;
    }
    const link: Link = { client, upstream: null, hung: false };
    this.#links.add(link);
    client.once('close', (hadError) => this.#onClientClose(link, hadError));
    if (this.#mode === 'hang') this.#hangLink(link);
    else this.#forward(link);
  }

  #forward(link: Link): void {
    const upstream = net.connect({ host: this.target.host, port: this.target.port, noDelay: true });
    this.#track(upstream);
    link.upstream = upstream;
    upstream.once('close', (hadError) => this.#onUpstreamClose(link, hadError));
    link.client.pipe(upstream);
    upstream.pipe(link.client);
  }

  #hangLink(link: Link): void {
    if (link.hung) return;
    link.hung = true;
    for (const socket of [link.client, link.upstream]) {
      if (!socket) continue;
      socket.unpipe();
      // Keep reading so the peer never sees backpressure, but drop everything.
      socket.on('data', ignore);
      socket.resume();
    }
  }

  #onClientClose(link: Link, hadError: boolean): void {
    this.#links.delete(link);
    const upstream = link.upstream;
    if (!upstream) return;
    if (hadError || link.hung) upstream.destroy();
    else upstream.end();
  }

  #onUpstreamClose(link: Link, hadError: boolean): void {
    // A hanging connection must not learn anything, not even that the server went away.
    if (link.hung) return;
    if (hadError) reset(link.client);
    else link.client.end();
  }

  #drop(link: Link, how: 'reset' | 'close'): void {
    this.#links.delete(link);
    if (how === 'reset') reset(link.client);
    else link.client.destroy();
    link.upstream?.destroy();
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    // Resets and broken pipes are the point of this proxy; they must never crash the run.
    socket.on('error', ignore);
    socket.once('close', () => this.#sockets.delete(socket));
  }
}

function reset(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

export function parseTarget(url: string): ProxyTarget {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = parsed.port ? Number(parsed.port) : DEFAULT_PORTS[parsed.protocol];
  if (!host || port === undefined) {
    throw new Error(`FaultProxy: cannot tell host and port from ${parsed.protocol}//${parsed.host}`);
  }
  return { host, port };
}
