// A bot process for the crash tests, meant to be SIGKILLed. It prints one line per event, and a
// write's ACK line only after its await resolved, so the parent knows exactly what was acknowledged:
//   ACK <user> <content> <ms>        an acknowledged write (content is unique per write)
//   FAIL <user> <content> <ms> <error>
//   LOG <level> <message>            what the store logged
//   PENDING <n>                      health().pending, every reportPendingMs
//   WRITES_DONE                      every writer finished its count
//   STEP <pass> <kind> <user>        (sync-steps) a command of a tapped sync pass completed
//   KINDS <json>                     (sync-steps, enumerate) the steps a pass issues, see below
//   KILLME                           (sync-steps) the kill point was reached; the process hangs
// The configuration comes as JSON in CRASH_CONFIG (see CrashConfig in crash.ts).
import { createHash } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import * as lua from '../../src/adapters/redis-scripts.js';
import { PostgresAdapter, RedisAdapter, TieredStore } from '../../src/index.js';
import type { CrashConfig, StepPlan } from './crash.js';
import { oneLine, out, workerLogger } from './worker.js';

const config = JSON.parse(process.env.CRASH_CONFIG ?? '{}') as CrashConfig;
const logger = workerLogger;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const forever = () => new Promise<never>(() => {});

function redisAdapter(extra: { client?: Redis | Cluster; timeoutMs?: number } = {}): RedisAdapter {
  const where = extra.client ? { client: extra.client } : 'nodes' in config.redis ? { nodes: config.redis.nodes } : { url: config.redis.url };
  return new RedisAdapter({ ...where, keyPrefix: config.keyPrefix, timeoutMs: extra.timeoutMs ?? config.redisTimeoutMs ?? 500 });
}

function pgAdapter(timeoutMs = config.pgTimeoutMs ?? 1000): PostgresAdapter {
  return new PostgresAdapter({ url: config.databaseUrl, schema: config.schema, timeoutMs, connectTimeoutMs: timeoutMs, max: 4 });
}

const writer = new TieredStore({
  logger,
  writeMode: config.writeMode,
  probeIntervalMs: config.probeIntervalMs ?? 100,
  journalLimit: 1_000_000,
  redis: redisAdapter(),
  postgres: pgAdapter(),
});

let sequence = 0;
/** One acknowledged-or-failed write, logged after its await. */
async function write(user: string, label: string): Promise<boolean> {
  const content = `${config.tag}:${label}:${sequence++}`;
  const started = performance.now();
  try {
    await writer.addMemory(user, 'user', content);
    out(`ACK ${user} ${content} ${Math.round(performance.now() - started)}`);
    return true;
  } catch (error) {
    out(`FAIL ${user} ${content} ${Math.round(performance.now() - started)} ${oneLine((error as Error).message)}`);
    return false;
  }
}

/** `writers` concurrent loops of `count` writes each (forever when count is 0) over the users. */
async function stream(count: number, label = 'w'): Promise<void> {
  const users = config.users;
  await Promise.all(
    Array.from({ length: config.writers }, async (_, w) => {
      for (let i = 0; count === 0 || i < count; i++) {
        await write(users[(w + i) % users.length] as string, `${label}${w}`);
        if (config.pauseMs) await sleep(Math.random() * config.pauseMs);
      }
    }),
  );
}

if (config.mode === 'stream') {
  if (config.startSync) writer.startSync(config.startSync);
  if (config.reportPendingMs) setInterval(() => out(`PENDING ${writer.health().pending}`), config.reportPendingMs);
  setInterval(() => {}, 1 << 30); // alive until killed
  await stream(config.count ?? 0);
  out('WRITES_DONE');
} else {
  await syncSteps();
}

/**
 * Store W writes (write-behind); store S only runs sync passes, through a Redis client and a
 * PostgreSQL adapter whose every command is tapped. Each step is named by the command and the kind
 * of key it touches (`srem:dirty`, `script:ACK:j`, `pg-commit`...). A pass can hold one step until a
 * write for that step's user has been acknowledged (`inject`), and stop for good after one step
 * completed on the server (`kill`): it prints KILLME and hangs until the parent's SIGKILL.
 */
async function syncSteps(): Promise<void> {
  const scripts = new Map<string, string>();
  for (const [name, source] of Object.entries(lua)) {
    if (typeof source === 'string') scripts.set(createHash('sha1').update(source).digest('hex'), name);
  }
  const client: Redis | Cluster =
    'nodes' in config.redis
      ? new Cluster(config.redis.nodes.map((url) => ({ host: new URL(url).hostname, port: Number(new URL(url).port) })))
      : new Redis(config.redis.url);
  client.on('error', () => {});
  await loadScripts(
    client,
    [...Object.values(lua)].filter((s): s is string => typeof s === 'string'),
  );

  let tapping = false;
  let pass = 0;
  let plan: StepPlan = {};
  let seen: string[] = [];
  let injected = false;
  let killed = false;

  const users = new Set(config.users);
  const userOf = (args: unknown[]): string | undefined => {
    for (const arg of args) {
      const text = String(arg);
      const tagged = /\{([^}]*)\}/.exec(text)?.[1];
      if (tagged !== undefined && users.has(tagged)) return tagged;
      if (users.has(text)) return text;
    }
    return undefined;
  };
  const keyKind = (key: unknown) => /\}:(\w+)$/.exec(String(key))?.[1] ?? '';
  const kindOf = (name: string, args: unknown[]): string => {
    if (name === 'evalsha' || name === 'eval') {
      const sha = name === 'eval' ? createHash('sha1').update(String(args[0])).digest('hex') : String(args[0]);
      return `script:${scripts.get(sha) ?? sha.slice(0, 8)}:${Number(args[1]) > 0 ? keyKind(args[2]) : ''}`;
    }
    return `${name}:${keyKind(args[0])}`;
  };

  /** Runs `send` as step `kind` of the pass, holding it or stopping after it as the plan says. */
  const step = async <T>(kind: string, user: string | undefined, send: () => Promise<T>): Promise<T> => {
    if (!tapping) return send();
    if (killed) return forever();
    const first = !seen.includes(kind);
    if (first) seen.push(kind);
    if (first && plan.inject === kind && !injected) {
      injected = true;
      await write(user ?? config.users[0]!, 'window');
    }
    const result = await send();
    out(`STEP ${pass} ${kind} ${user ?? '-'}`);
    if (first && plan.kill === kind && !killed) {
      killed = true;
      out('KILLME');
      return forever();
    }
    return result;
  };

  const send = client.sendCommand.bind(client) as (command: { name: string; args: unknown[] }, ...rest: unknown[]) => Promise<unknown>;
  (client as unknown as { sendCommand: typeof send }).sendCommand = (command, ...rest) => {
    // A pipeline's commands (sent with its stream) are steps too; a write script behind its PING is not.
    const pipelined = (rest[0] as { isPipeline?: boolean } | undefined)?.isPipeline === true;
    if (!tapping || (rest.length > 0 && !pipelined)) return send(command, ...rest);
    return step(kindOf(command.name, command.args), userOf(command.args), () => send(command, ...rest));
  };
  const postgres = pgAdapter(10_000);
  const pgWrite = postgres.write.bind(postgres);
  postgres.write = (ops) => step('pg-commit', ops[0]?.user, () => pgWrite(ops));

  const syncer = new TieredStore({ logger, redis: redisAdapter({ client, timeoutMs: 10_000 }), postgres });
  // Both stores started (and done with any start-up work, such as draining leftovers: none here)
  // before anything is written, so the only pass that runs is the tapped one.
  await Promise.all([syncer.getHistory('warm-up'), writer.getHistory('warm-up')]);
  await sleep(200);
  const union: { kind: string; inject: string | undefined }[] = [];
  const runPass = async (p: StepPlan) => {
    await stream(config.count ?? 3, `p${pass}-`);
    plan = p;
    seen = [];
    injected = false;
    tapping = true;
    try {
      await syncer.syncNow();
    } finally {
      tapping = false;
    }
    for (const kind of seen) if (!union.some((u) => u.kind === kind)) union.push({ kind, inject: p.inject });
    pass++;
  };

  if (config.steps?.enumerate) {
    // A plain pass gives the usual steps; a write landing before each of them may branch into more.
    await runPass({});
    for (const { kind } of [...union]) await runPass({ inject: kind });
    out(`KINDS ${JSON.stringify(union)}`);
    process.exit(0);
  }
  await runPass(config.steps?.plan ?? {});
  // The kill point was never reached: say so, the parent fails the run.
  out(`NOKILL ${JSON.stringify(seen)}`);
  process.exit(3);
}

/** Every script on every master, so a pass never takes the NOSCRIPT detour (an extra step). */
async function loadScripts(client: Redis | Cluster, sources: string[]): Promise<void> {
  const nodes = client instanceof Cluster ? await clusterMasters(client) : [client];
  for (const node of nodes) for (const source of sources) await node.script('LOAD', source);
}

async function clusterMasters(cluster: Cluster): Promise<Redis[]> {
  if (cluster.status !== 'ready') await new Promise((resolve) => cluster.once('ready', resolve));
  return cluster.nodes('master');
}
