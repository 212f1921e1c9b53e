/**
 * Test helper: start a real Redis Cluster on loopback (or reuse an existing one).
 *
 * - `startRedisCluster()` spawns `masters * (1 + replicasPerMaster)` `redis-server`
 *   child processes (not daemonized, same process group as the test), each with its
 *   own temp dir under `os.tmpdir()`, joins them with `redis-cli --cluster create`
 *   and waits until every node reports `cluster_state:ok`, all nodes agree on the
 *   slot owners and every replica's master link is up.
 * - If `TEST_REDIS_CLUSTER_NODES` is set ("host:port,host:port,..."), nothing is
 *   started: the handle points at that cluster, and the process-control methods
 *   (`stopNode`, `startNode`, `failover`) throw.
 *
 * Requires `redis-server` and `redis-cli` (Redis >= 7.0) on PATH.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { trackProcess } from './run-registry.js';

export interface RedisNodeAddress {
  host: string;
  port: number;
}

export interface StartRedisClusterOptions {
  /** Number of masters (>= 3, a `redis-cli --cluster create` requirement). Default 3. */
  masters?: number;
  /** Replicas per master. Default 1. */
  replicasPerMaster?: number;
  /**
   * First port to try. Ports are probed upwards from here (the cluster bus port,
   * port + 10000, must be free too). Default: random in 20000-40000.
   */
  basePort?: number;
  /** Deadline for the cluster to become healthy after `--cluster create`. Default 30 000 ms. */
  readyTimeoutMs?: number;
}

/** One line of `CLUSTER NODES`, parsed. */
export interface ClusterNodeEntry {
  id: string;
  host: string;
  port: number;
  flags: string[];
  /** Node id of the master for replicas, `undefined` for masters. */
  masterId: string | undefined;
  linkState: string;
  /** Slot ranges `[start, end]` (inclusive) served by this node (masters only). */
  slots: Array<[number, number]>;
}

export interface RedisClusterHandle {
  /** Startup nodes as of cluster creation, masters first (the given order for an external cluster). */
  readonly nodes: RedisNodeAddress[];
  /** True when the handle points at `TEST_REDIS_CLUSTER_NODES` instead of a locally started cluster. */
  readonly external: boolean;
  /** Temp dirs of the locally started nodes (removed by `stop()`); empty for an external cluster. */
  readonly tempDirs: readonly string[];
  /** Current masters that own slots and are not flagged as failed, ordered by their first slot. */
  masters(): Promise<RedisNodeAddress[]>;
  /** The full `CLUSTER NODES` view of the first reachable node. */
  clusterNodes(): Promise<ClusterNodeEntry[]>;
  /** The master currently owning the slot of `key` (hash tags honoured, computed by Redis). */
  masterForKey(key: string): Promise<RedisNodeAddress>;
  /** SIGKILL the node's process (a real crash) and wait for it to exit. No-op if already stopped. */
  stopNode(port: number): Promise<void>;
  /**
   * Restart a stopped node with its same config file so it rejoins the cluster.
   * By default waits until the cluster is healthy again (node rejoined, replica links up).
   */
  startNode(port: number, options?: { waitForCluster?: boolean; timeoutMs?: number }): Promise<void>;
  /**
   * Crash (SIGKILL) a master and wait until one of its replicas has been promoted and
   * every surviving node reports `cluster_state:ok` and agrees on the masters.
   */
  failover(masterPort: number, options?: { timeoutMs?: number }): Promise<{ newMasterPort: number }>;
  /** Kill every process and remove the temp dirs. Idempotent. No-op for an external cluster. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const TOTAL_SLOTS = 16384;
const CLUSTER_BUS_OFFSET = 10000;
const RESERVED_PORTS = new Set([6379, 6379 + CLUSTER_BUS_OFFSET]);
const POLL_INTERVAL_MS = 100;
const NODE_BOOT_TIMEOUT_MS = 10_000;
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const LOG_TAIL_LINES = 40;

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Open a standalone connection to one node, run `fn`, always disconnect. */
async function withNode<T>(address: RedisNodeAddress, fn: (redis: Redis) => Promise<T>, timeoutMs = 2_000): Promise<T> {
  const redis = new Redis({
    host: address.host,
    port: address.port,
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  });
  redis.on('error', () => {
    /* reported through the rejected promise instead */
  });
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const idx = line.indexOf(':');
    if (idx > 0 && !line.startsWith('#')) out.set(line.slice(0, idx), line.slice(idx + 1).trim());
  }
  return out;
}

export function parseClusterNodes(text: string): ClusterNodeEntry[] {
  const entries: ClusterNodeEntry[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const parts = line.split(' ');
    const [id, addr, flags, master, , , , linkState, ...slotParts] = parts;
    if (!id || !addr || !flags || !master || !linkState) continue;
    // "ip:port@cport[,hostname]"
    const hostPort = addr.split('@')[0] ?? '';
    const colon = hostPort.lastIndexOf(':');
    const host = hostPort.slice(0, colon);
    const port = Number(hostPort.slice(colon + 1));
    const slots: Array<[number, number]> = [];
    for (const s of slotParts) {
      if (s.startsWith('[')) continue; // migrating / importing marker
      const [a, b] = s.split('-');
      const start = Number(a);
      const end = b === undefined ? start : Number(b);
      if (Number.isInteger(start) && Number.isInteger(end)) slots.push([start, end]);
    }
    slots.sort((x, y) => x[0] - y[0]);
    entries.push({
      id,
      host,
      port,
      flags: flags.split(','),
      masterId: master === '-' ? undefined : master,
      linkState,
      slots,
    });
  }
  return entries;
}

function isFailing(entry: ClusterNodeEntry): boolean {
  return entry.flags.some((f) => f === 'fail' || f === 'fail?' || f === 'handshake' || f === 'noaddr');
}

function activeMasters(entries: ClusterNodeEntry[]): ClusterNodeEntry[] {
  return entries
    .filter((e) => e.flags.includes('master') && e.slots.length > 0 && !e.flags.includes('fail'))
    .sort((a, b) => (a.slots[0]?.[0] ?? 0) - (b.slots[0]?.[0] ?? 0));
}

function execFileText(file: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; output: string; error?: Error }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const output = `${stdout}${stderr ? `\n[stderr]\n${stderr}` : ''}`
        // biome-ignore lint/suspicious/noControlCharactersInRegex: matching terminal escape codes is the point
        .replace(/\x1b\[[0-9;]*m/g, '') // redis-cli colours its output even when piped
        .trim();
      resolve(error ? { ok: false, output, error } : { ok: true, output });
    });
  });
}

/** Thrown from a poll check to abort polling immediately. */
class FatalError extends Error {}

/** A node failed to boot. `portTaken` says whether retrying on another port may help. */
class NodeStartError extends FatalError {
  constructor(
    message: string,
    readonly portTaken: boolean,
  ) {
    super(message);
  }
}

type PollResult<T> = { done: true; value: T } | { done: false; detail: string };

/** Poll `check` every `intervalMs` until it is done or the deadline passes (then throw with the last detail). */
async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<PollResult<T>>,
  onTimeout?: () => Promise<string>,
  intervalMs = POLL_INTERVAL_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastDetail = '(no attempt finished)';
  for (;;) {
    try {
      const result = await check();
      if (result.done) return result.value;
      lastDetail = result.detail;
    } catch (err) {
      if (err instanceof FatalError) throw err;
      lastDetail = errorMessage(err);
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  let extra = '';
  if (onTimeout) {
    try {
      extra = `\n${await onTimeout()}`;
    } catch (err) {
      extra = `\n(diagnostics failed: ${errorMessage(err)})`;
    }
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.\nLast state:\n${lastDetail}${extra}`);
}

// ---------------------------------------------------------------------------------------------
// Port selection
// ---------------------------------------------------------------------------------------------

/** Ports handed out by this process and not yet released (avoid collisions between clusters in one file). */
const portsInUseByUs = new Set<number>();

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: HOST, port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

async function isPortUsable(port: number): Promise<boolean> {
  const bus = port + CLUSTER_BUS_OFFSET;
  if (port < 1024 || bus > 65535) return false;
  if (RESERVED_PORTS.has(port) || RESERVED_PORTS.has(bus)) return false;
  if (portsInUseByUs.has(port) || portsInUseByUs.has(bus)) return false;
  return (await canListen(port)) && (await canListen(bus));
}

/** Find a free port (and free bus port) at or above `from`; reserves it in `portsInUseByUs`. */
async function allocatePort(from: number): Promise<number> {
  for (let port = from, tries = 0; tries < 2_000; port++, tries++) {
    if (port + CLUSTER_BUS_OFFSET > 65535) port = 20_000;
    if (await isPortUsable(port)) {
      portsInUseByUs.add(port);
      portsInUseByUs.add(port + CLUSTER_BUS_OFFSET);
      return port;
    }
  }
  throw new Error(`Could not find a free port (with free cluster bus port +${CLUSTER_BUS_OFFSET}) from ${from}`);
}

function releasePort(port: number): void {
  portsInUseByUs.delete(port);
  portsInUseByUs.delete(port + CLUSTER_BUS_OFFSET);
}

// ---------------------------------------------------------------------------------------------
// Process registry: kill everything if the test process exits without calling stop()
// ---------------------------------------------------------------------------------------------

const liveClusters = new Set<LocalRedisCluster>();
let exitHooksInstalled = false;

function killAllSync(): void {
  for (const cluster of liveClusters) cluster.killSync();
  liveClusters.clear();
}

function onExit(): void {
  killAllSync();
}

function onSignal(signal: NodeJS.Signals): void {
  killAllSync();
  uninstallExitHooks();
  // Preserve the default behaviour (terminate) unless someone else handles the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

const signalHandlers: Array<[NodeJS.Signals, () => void]> = [
  ['SIGINT', () => onSignal('SIGINT')],
  ['SIGTERM', () => onSignal('SIGTERM')],
  ['SIGHUP', () => onSignal('SIGHUP')],
];

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', onExit);
  for (const [sig, handler] of signalHandlers) process.on(sig, handler);
}

function uninstallExitHooks(): void {
  if (!exitHooksInstalled) return;
  exitHooksInstalled = false;
  process.off('exit', onExit);
  for (const [sig, handler] of signalHandlers) process.off(sig, handler);
}

// ---------------------------------------------------------------------------------------------
// One redis-server process
// ---------------------------------------------------------------------------------------------

class RedisNodeProcess {
  child: ChildProcess | undefined;
  private logTail: string[] = [];
  private partialLine = '';

  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get configFile(): string {
    return path.join(this.dir, `nodes-${this.port}.conf`);
  }

  get running(): boolean {
    const child = this.child;
    // No pid means the spawn itself failed (e.g. ENOENT).
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }

  get address(): RedisNodeAddress {
    return { host: HOST, port: this.port };
  }

  log(): string {
    return [...this.logTail, this.partialLine].filter(Boolean).join('\n');
  }

  private appendLog(chunk: Buffer): void {
    const lines = (this.partialLine + chunk.toString('utf8')).split('\n');
    this.partialLine = lines.pop() ?? '';
    this.logTail.push(...lines);
    if (this.logTail.length > LOG_TAIL_LINES) this.logTail.splice(0, this.logTail.length - LOG_TAIL_LINES);
  }

  /** Spawn redis-server and wait until it answers PING. Throws (with the log tail) if it exits first. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`redis-server on port ${this.port} is already running`);
    this.logTail = [];
    this.partialLine = '';
    const args = [
      '--port',
      String(this.port),
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      this.configFile,
      '--cluster-node-timeout',
      '1000',
      '--appendonly',
      'no',
      '--save',
      '',
      '--bind',
      HOST,
      '--dir',
      this.dir,
      '--protected-mode',
      'no',
      // Start replica full syncs immediately instead of waiting 5 s for more replicas to
      // batch (Redis 7 default): makes cluster start and node rejoin ~5 s faster.
      '--repl-diskless-sync-delay',
      '0',
      // Redis rewrites its process title ("redis-server 127.0.0.1:P [cluster]"), which hides the
      // command line; keep the config file path in it so `pgrep -af cluster-config-file` finds
      // (and identifies) processes started by this helper.
      '--proc-title-template',
      `{title} {listen-addr} {server-mode} cluster-config-file=${this.configFile}`,
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackProcess(child.pid, 'Redis Cluster node', 'SIGKILL');
    this.child = child;
    child.stdout?.on('data', (c: Buffer) => this.appendLog(c));
    child.stderr?.on('data', (c: Buffer) => this.appendLog(c));
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });

    await pollUntil(`redis-server on port ${this.port} to answer PING`, NODE_BOOT_TIMEOUT_MS, async () => {
      if (spawnError) {
        const hint =
          (spawnError as NodeJS.ErrnoException).code === 'ENOENT'
            ? ' (is redis-server installed and on PATH? Or set TEST_REDIS_CLUSTER_NODES to use an existing cluster)'
            : '';
        throw new NodeStartError(`Failed to spawn redis-server: ${spawnError.message}${hint}`, false);
      }
      if (child.pid === undefined) return { done: false, detail: 'redis-server is being spawned' };
      if (!this.running) {
        const log = this.log();
        throw new NodeStartError(
          `redis-server on port ${this.port} exited early (code ${String(child.exitCode)}, signal ${String(child.signalCode)}).\n` + `Log tail:\n${log}`,
          /Address already in use|Failed listening on port|Could not create server TCP listening socket/i.test(log),
        );
      }
      const pong = await withNode(this.address, (r) => r.ping(), 500);
      return pong === 'PONG' ? { done: true, value: undefined } : { done: false, detail: `PING answered ${pong}` };
    });
  }

  /** SIGKILL and wait for the exit event. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  killSync(): void {
    if (this.child && this.running) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Health check of a (local) cluster
// ---------------------------------------------------------------------------------------------

interface HealthReport {
  ok: boolean;
  detail: string;
  /** Agreed active master ports (only meaningful when ok). */
  masterPorts: number[];
}

/**
 * Healthy = every live node answers, reports cluster_state:ok with all slots ok, sees every
 * other live node without fail/handshake flags, all live nodes agree on the slot owners,
 * every slot owner is live, and every live replica has master_link_status:up.
 */
async function checkHealth(livePorts: number[], expectedMasters?: number): Promise<HealthReport> {
  const problems: string[] = [];
  const signatures = new Map<string, number[]>();
  let masterPorts: number[] = [];

  for (const port of livePorts) {
    const where = `${HOST}:${port}`;
    let infoText: string;
    let nodesText: string;
    let replicationText: string;
    try {
      [infoText, nodesText, replicationText] = await withNode({ host: HOST, port }, async (r) => {
        const info = String(await r.call('CLUSTER', 'INFO'));
        const nodes = String(await r.call('CLUSTER', 'NODES'));
        const repl = await r.info('replication');
        return [info, nodes, repl] as const;
      });
    } catch (err) {
      problems.push(`${where}: not answering (${errorMessage(err)})`);
      continue;
    }
    const info = parseInfo(infoText);
    if (
      info.get('cluster_state') !== 'ok' ||
      info.get('cluster_slots_assigned') !== String(TOTAL_SLOTS) ||
      info.get('cluster_slots_ok') !== String(TOTAL_SLOTS)
    ) {
      problems.push(`${where}: CLUSTER INFO:\n${infoText.trim()}`);
      continue;
    }
    const view = parseClusterNodes(nodesText);
    const myself = view.find((e) => e.flags.includes('myself'));
    for (const other of livePorts) {
      const entry = view.find((e) => e.port === other);
      if (!entry) problems.push(`${where}: does not know ${HOST}:${other} yet`);
      else if (isFailing(entry)) problems.push(`${where}: sees ${HOST}:${other} as ${entry.flags.join(',')}`);
    }
    const masters = activeMasters(view);
    const signature = masters.map((m) => `${m.port}[${m.slots.map(([a, b]) => `${a}-${b}`).join(',')}]`).join(' ');
    signatures.set(signature, [...(signatures.get(signature) ?? []), port]);
    masterPorts = masters.map((m) => m.port);
    for (const m of masters) {
      if (!livePorts.includes(m.port)) problems.push(`${where}: slot owner ${HOST}:${m.port} is not running`);
    }
    if (myself?.flags.includes('slave')) {
      const repl = parseInfo(replicationText);
      if (repl.get('master_link_status') !== 'up') {
        problems.push(
          `${where}: replica master_link_status:${repl.get('master_link_status') ?? '?'} ` +
            `(master ${repl.get('master_host') ?? '?'}:${repl.get('master_port') ?? '?'})`,
        );
      }
    }
  }

  if (signatures.size > 1) {
    problems.push(`nodes disagree about slot owners:\n${[...signatures].map(([sig, ports]) => `  seen by ${ports.join(',')}: ${sig}`).join('\n')}`);
  }
  if (problems.length === 0 && expectedMasters !== undefined && masterPorts.length !== expectedMasters) {
    problems.push(`expected ${expectedMasters} masters, cluster has ${masterPorts.length}: ${masterPorts.join(',')}`);
  }
  return { ok: problems.length === 0, detail: problems.join('\n'), masterPorts };
}

async function clusterCheckOutput(port: number): Promise<string> {
  const res = await execFileText('redis-cli', ['--cluster', 'check', `${HOST}:${port}`], 10_000);
  return `redis-cli --cluster check ${HOST}:${port}:\n${res.output}`;
}

// ---------------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------------

async function queryFirstReachable<T>(addresses: RedisNodeAddress[], fn: (r: Redis) => Promise<T>): Promise<T> {
  const errors: string[] = [];
  for (const address of addresses) {
    try {
      return await withNode(address, fn);
    } catch (err) {
      errors.push(`${address.host}:${address.port}: ${errorMessage(err)}`);
    }
  }
  throw new Error(`No cluster node reachable:\n${errors.join('\n')}`);
}

abstract class BaseHandle implements RedisClusterHandle {
  abstract readonly nodes: RedisNodeAddress[];
  abstract readonly external: boolean;
  abstract readonly tempDirs: readonly string[];
  protected abstract queryNodes(): RedisNodeAddress[];

  async clusterNodes(): Promise<ClusterNodeEntry[]> {
    const text = await queryFirstReachable(this.queryNodes(), async (r) => String(await r.call('CLUSTER', 'NODES')));
    return parseClusterNodes(text);
  }

  async masters(): Promise<RedisNodeAddress[]> {
    return activeMasters(await this.clusterNodes()).map((m) => ({ host: m.host, port: m.port }));
  }

  async masterForKey(key: string): Promise<RedisNodeAddress> {
    const [slot, nodesText] = await queryFirstReachable(this.queryNodes(), async (r) => {
      const s = Number(await r.call('CLUSTER', 'KEYSLOT', key));
      const n = String(await r.call('CLUSTER', 'NODES'));
      return [s, n] as const;
    });
    const owner = activeMasters(parseClusterNodes(nodesText)).find((m) => m.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!owner) throw new Error(`No active master owns slot ${slot} (key ${JSON.stringify(key)})`);
    return { host: owner.host, port: owner.port };
  }

  abstract stopNode(port: number): Promise<void>;
  abstract startNode(port: number, options?: { waitForCluster?: boolean; timeoutMs?: number }): Promise<void>;
  abstract failover(masterPort: number, options?: { timeoutMs?: number }): Promise<{ newMasterPort: number }>;
  abstract stop(): Promise<void>;
}

class ExternalRedisCluster extends BaseHandle {
  readonly external = true;
  readonly tempDirs: readonly string[] = [];

  constructor(readonly nodes: RedisNodeAddress[]) {
    super();
  }

  protected queryNodes(): RedisNodeAddress[] {
    return this.nodes;
  }

  private unsupported(what: string): never {
    throw new Error(
      `${what} requires a locally started cluster, but TEST_REDIS_CLUSTER_NODES is set ` +
        `(${process.env['TEST_REDIS_CLUSTER_NODES'] ?? ''}); unset it to let the test start its own cluster.`,
    );
  }

  async stopNode(_port: number): Promise<void> {
    this.unsupported('stopNode()');
  }

  async startNode(_port: number): Promise<void> {
    this.unsupported('startNode()');
  }

  async failover(_masterPort: number): Promise<{ newMasterPort: number }> {
    this.unsupported('failover()');
  }

  async stop(): Promise<void> {
    /* not ours to stop */
  }
}

class LocalRedisCluster extends BaseHandle {
  readonly external = false;
  nodes: RedisNodeAddress[] = [];
  private readonly procs = new Map<number, RedisNodeProcess>();
  private stopping: Promise<void> | undefined;

  get tempDirs(): readonly string[] {
    return [...this.procs.values()].map((p) => p.dir);
  }

  protected queryNodes(): RedisNodeAddress[] {
    return this.livePorts().map((port) => ({ host: HOST, port }));
  }

  livePorts(): number[] {
    return [...this.procs.values()].filter((p) => p.running).map((p) => p.port);
  }

  /** Allocate a port + temp dir and boot one redis-server; retries on port races. */
  async addNode(searchFrom: number): Promise<number> {
    let from = searchFrom;
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await allocatePort(from);
      const dir = mkdtempSync(path.join(os.tmpdir(), `redis-cluster-${port}-`));
      const proc = new RedisNodeProcess(port, dir);
      this.procs.set(port, proc);
      try {
        await proc.start();
        return port;
      } catch (err) {
        lastError = err;
        await proc.kill();
        this.procs.delete(port);
        rmSync(dir, { recursive: true, force: true });
        // Someone grabbed the port between the probe and the bind: keep it reserved, try the next one.
        if (!(err instanceof NodeStartError) || !err.portTaken) {
          releasePort(port);
          throw err;
        }
        from = port + 1;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }

  private proc(port: number, what: string): RedisNodeProcess {
    const proc = this.procs.get(port);
    if (!proc) {
      throw new Error(`${what}: port ${port} is not a node of this cluster (nodes: ${[...this.procs.keys()].join(', ')})`);
    }
    return proc;
  }

  async stopNode(port: number): Promise<void> {
    this.assertNotStopped('stopNode()');
    await this.proc(port, 'stopNode()').kill();
  }

  async startNode(port: number, options: { waitForCluster?: boolean; timeoutMs?: number } = {}): Promise<void> {
    this.assertNotStopped('startNode()');
    const proc = this.proc(port, 'startNode()');
    await proc.start();
    if (options.waitForCluster === false) return;
    const timeoutMs = options.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    await pollUntil(
      `node ${HOST}:${port} to rejoin the cluster (cluster_state:ok everywhere, replica links up)`,
      timeoutMs,
      async () => {
        const health = await checkHealth(this.livePorts());
        return health.ok ? { done: true, value: undefined } : { done: false, detail: health.detail };
      },
      () => clusterCheckOutput(port),
    );
  }

  async failover(masterPort: number, options: { timeoutMs?: number } = {}): Promise<{ newMasterPort: number }> {
    this.assertNotStopped('failover()');
    const proc = this.proc(masterPort, 'failover()');
    if (!proc.running) throw new Error(`failover(): node ${HOST}:${masterPort} is not running`);
    const observers = this.livePorts().filter((p) => p !== masterPort);
    const view = parseClusterNodes(
      await queryFirstReachable(
        observers.map((port) => ({ host: HOST, port })),
        async (r) => String(await r.call('CLUSTER', 'NODES')),
      ),
    );
    const master = view.find((e) => e.port === masterPort);
    if (!master?.flags.includes('master') || master.slots.length === 0) {
      throw new Error(`failover(): ${HOST}:${masterPort} is not a master owning slots (flags: ${master?.flags.join(',') ?? 'unknown'})`);
    }
    const replicaPorts = view.filter((e) => e.masterId === master.id && !isFailing(e) && observers.includes(e.port)).map((e) => e.port);
    if (replicaPorts.length === 0) {
      throw new Error(`failover(): master ${HOST}:${masterPort} has no running replica that could be promoted`);
    }

    await proc.kill();

    const timeoutMs = options.timeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const newMasterPort = await pollUntil(
      `a replica (${replicaPorts.join(', ')}) of crashed master ${HOST}:${masterPort} to be promoted and cluster_state:ok on all surviving nodes`,
      timeoutMs,
      async (): Promise<PollResult<number>> => {
        const health = await checkHealth(this.livePorts());
        if (!health.ok) return { done: false, detail: health.detail };
        const promoted = health.masterPorts.find((p) => replicaPorts.includes(p));
        if (promoted === undefined || health.masterPorts.includes(masterPort)) {
          return { done: false, detail: `masters are ${health.masterPorts.join(', ')}; no replica promoted yet` };
        }
        return { done: true, value: promoted };
      },
      () => clusterCheckOutput(observers[0] ?? masterPort),
    );
    return { newMasterPort };
  }

  private assertNotStopped(what: string): void {
    if (this.stopping) throw new Error(`${what}: the cluster has been stopped`);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      liveClusters.delete(this);
      if (liveClusters.size === 0) uninstallExitHooks();
      const procs = [...this.procs.values()];
      await Promise.all(procs.map((p) => p.kill()));
      await Promise.all(procs.map((p) => rm(p.dir, { recursive: true, force: true })));
      for (const p of procs) releasePort(p.port);
    })();
    return this.stopping;
  }

  /** Synchronous emergency cleanup for process exit. */
  killSync(): void {
    for (const p of this.procs.values()) {
      p.killSync();
      try {
        rmSync(p.dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  }

  /** Boot all processes, create the cluster, wait until healthy. */
  async create(masters: number, replicasPerMaster: number, basePort: number, readyTimeoutMs: number): Promise<void> {
    const total = masters * (1 + replicasPerMaster);
    let next = basePort;
    for (let i = 0; i < total; i++) {
      const port = await this.addNode(next);
      next = port + 1;
    }
    const ports = [...this.procs.keys()];
    const createArgs = ['--cluster', 'create', ...ports.map((p) => `${HOST}:${p}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'];
    const created = await execFileText('redis-cli', createArgs, 60_000);
    if (!created.ok) {
      throw new Error(`redis-cli ${createArgs.join(' ')} failed: ${created.error?.message ?? ''}\n${created.output}`);
    }

    await pollUntil(
      `Redis Cluster on ports ${ports.join(', ')} to become healthy (cluster_state:ok on every node, replica master links up)`,
      readyTimeoutMs,
      async () => {
        const health = await checkHealth(ports, masters);
        return health.ok ? { done: true, value: undefined } : { done: false, detail: health.detail };
      },
      async () => `redis-cli --cluster create output:\n${created.output}\n${await clusterCheckOutput(ports[0] ?? 0)}`,
    );

    // Order startup nodes masters first (by first slot), then replicas in the order of their masters.
    const view = await this.clusterNodes();
    const masterEntries = activeMasters(view);
    const ordered: number[] = masterEntries.map((m) => m.port);
    for (const m of masterEntries) {
      for (const e of view) if (e.masterId === m.id) ordered.push(e.port);
    }
    for (const p of ports) if (!ordered.includes(p)) ordered.push(p);
    this.nodes = ordered.map((port) => ({ host: HOST, port }));
  }

  register(): void {
    liveClusters.add(this);
    installExitHooks();
  }
}

function parseNodeList(value: string): RedisNodeAddress[] {
  const nodes = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const colon = item.lastIndexOf(':');
      const host = colon > 0 ? item.slice(0, colon).replace(/^\[|\]$/g, '') : '';
      const port = Number(item.slice(colon + 1));
      if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) {
        throw new Error(`TEST_REDIS_CLUSTER_NODES: invalid entry ${JSON.stringify(item)} (expected host:port)`);
      }
      return { host, port };
    });
  if (nodes.length === 0) throw new Error('TEST_REDIS_CLUSTER_NODES is set but contains no host:port entries');
  return nodes;
}

/**
 * Start a local Redis Cluster for tests (or point at `TEST_REDIS_CLUSTER_NODES`).
 * Always call `stop()` (e.g. in `afterAll`); processes are also killed on process exit.
 */
export async function startRedisCluster(options: StartRedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const fromEnv = process.env['TEST_REDIS_CLUSTER_NODES'];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return new ExternalRedisCluster(parseNodeList(fromEnv));
  }

  const masters = options.masters ?? 3;
  const replicasPerMaster = options.replicasPerMaster ?? 1;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new Error(`startRedisCluster: masters must be an integer >= 3 (redis-cli --cluster create requirement), got ${masters}`);
  }
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) {
    throw new Error(`startRedisCluster: replicasPerMaster must be an integer >= 0, got ${replicasPerMaster}`);
  }
  const basePort = options.basePort ?? 20_000 + Math.floor(Math.random() * 20_000);

  const cluster = new LocalRedisCluster();
  cluster.register();
  try {
    await cluster.create(masters, replicasPerMaster, basePort, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
