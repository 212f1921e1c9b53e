import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { checkStored, CrashChild, killAllChildren, recover, type CrashConfig, type StepPlan } from './helpers/crash.js';
import { startRedisCluster, type RedisClusterHandle } from './helpers/redis-cluster.js';
import { cleanupPostgres, cleanupRedis, databaseUrl, isolation, redisUrl } from './helpers/services.js';

// Crash test (c): a process SIGKILLed at each step of a sync pass (journal read, PostgreSQL commit,
// ack, unmark...), with a write for the same user acknowledged just before that step. Whatever the
// step, a fresh process drains everything: every acknowledged write in PostgreSQL exactly once, and
// nothing left pending. The steps are not hard-coded: a first child records the commands a pass
// issues (and those a write landing before each of them branches into), then one child per step.
let cluster: RedisClusterHandle | undefined;
afterEach(killAllChildren);
afterAll(async () => {
  await killAllChildren();
  await cluster?.stop();
});

interface Step {
  kind: string;
  inject: string | undefined;
}

const USERS = ['cu0', 'cu1', 'cu2'];

function config(where: CrashConfig['redis'], names: { keyPrefix: string; schema: string }, tag: string, steps: CrashConfig['steps']): CrashConfig {
  return { mode: 'sync-steps', redis: where, databaseUrl: databaseUrl(), ...names, writeMode: 'write-behind', writers: 4, users: USERS, tag, count: 3, steps };
}

async function enumerate(where: CrashConfig['redis']): Promise<Step[]> {
  const names = isolation('crash_steps_enum');
  try {
    const child = CrashChild.start(config(where, names, 'enum', { enumerate: true }));
    const line = await child.waitFor((l) => l.startsWith('KINDS '), 30_000, 'KINDS');
    return JSON.parse(line.slice('KINDS '.length)) as Step[];
  } finally {
    await killAllChildren();
    await cleanup(where, names);
  }
}

async function cleanup(where: CrashConfig['redis'], names: { keyPrefix: string; schema: string }): Promise<void> {
  if ('url' in where) await cleanupRedis(where.url, names.keyPrefix).catch(() => {});
  else if (cluster) for (const master of await cluster.masters()) await cleanupRedis(`redis://${master.host}:${master.port}`, names.keyPrefix).catch(() => {});
  await cleanupPostgres(databaseUrl(), names.schema);
}

/** One child killed after `step`; then a fresh process recovers. Returns what went wrong ('' if nothing). */
async function killAt(where: CrashConfig['redis'], step: Step, n: number): Promise<string> {
  const names = isolation(`crash_step_${n}`);
  const tag = `s${n}`;
  const plan: StepPlan = { inject: step.inject ?? step.kind, kill: step.kind };
  try {
    const child = CrashChild.start(config(where, names, tag, { plan }));
    await child.waitFor((l) => l === 'KILLME', 30_000, `KILLME at ${step.kind}`);
    await child.kill();
    const window = [...child.acked].filter(([content]) => content.includes(':window:'));
    if (window.length !== 1) return `expected one write in the window, got ${window.length}`;
    // On a Cluster a kill between the ack's two steps leaves a count with nothing journaled behind
    // it, which the index heals once it has looked idle for 10 s (src/adapters/redis.ts IDLE_COUNT_MS).
    const { pending, moved, slowestPassMs } = await recover(where, databaseUrl(), names, 'url' in where ? 8000 : 16_000);
    const stored = await checkStored(databaseUrl(), names.schema, child.acked, tag);
    const problems: string[] = [];
    if (stored.missing.length > 0) problems.push(`lost ${stored.missing.length}/${stored.acked} acknowledged: ${stored.missing.slice(0, 3).join(', ')}`);
    if (stored.duplicated.length > 0) problems.push(`duplicated: ${stored.duplicated.slice(0, 3).join(', ')}`);
    if (pending !== 0) problems.push(`pending stays ${pending} after ${moved.length} passes (they moved ${moved.reduce((a, b) => a + b, 0)} messages)`);
    // A handful of entries moves in milliseconds: a pass that takes seconds is spinning on something.
    if (slowestPassMs > 5000) problems.push(`a recovery pass took ${slowestPassMs} ms`);
    return problems.join('; ');
  } finally {
    await killAllChildren();
    await cleanup(where, names);
  }
}

async function everyStep(where: CrashConfig['redis']): Promise<void> {
  const steps = await enumerate(where);
  console.info(
    `sync steps (${'url' in where ? 'one Redis' : 'Cluster'}): ${steps.map((s) => (s.inject && s.inject !== s.kind ? `${s.kind} (write before ${s.inject})` : s.kind)).join(', ')}`,
  );
  // A pass reads the journal, commits to PostgreSQL and acknowledges: at least these must be there.
  expect(steps.some((s) => s.kind === 'pg-commit')).toBe(true);
  expect(steps.length).toBeGreaterThanOrEqual(4);
  const results: Record<string, string> = {};
  const timings: string[] = [];
  for (const [n, step] of steps.entries()) {
    const began = performance.now();
    const problem = await killAt(where, step, n);
    const name = `${step.kind}${step.inject && step.inject !== step.kind ? ` after a write before ${step.inject}` : ''}`;
    results[name] = problem;
    timings.push(`${name} ${Math.round(performance.now() - began)} ms`);
  }
  console.info(`time per kill point: ${timings.join(', ')}`);
  console.info(`kill points: ${JSON.stringify(results, null, 1)}`);
  const failed = Object.fromEntries(Object.entries(results).filter(([, problem]) => problem !== ''));
  expect(failed).toEqual({});
}

describe('SIGKILL at each step of a sync pass, a write for that user landing just before it', () => {
  it('on one Redis: nothing acknowledged is lost or doubled, and a fresh process drains to zero', async () => {
    await everyStep({ url: redisUrl() });
  }, 180_000);

  it('on a Redis Cluster: nothing acknowledged is lost or doubled, and a fresh process drains to zero', async () => {
    cluster = await startRedisCluster({ replicasPerMaster: 0 });
    await everyStep({ nodes: cluster.nodes.map((n) => `redis://${n.host}:${n.port}`) });
  }, 240_000);
});
