/**
 * npx tsx bench/script-cost.ts : what the append's Redis script costs Redis itself, apart from the
 * network and the client: a private redis-server (on a free port, so no other client's commands
 * count), 100 hot copies of 50 messages, then 5,000 appends as the store sends them (the lean
 * script, journaling as write-behind does) and 5,000 MULTI RPUSH+LTRIM+PEXPIRE, each read from
 * INFO commandstats (microseconds per call, as Redis measured them). Rounds alternate; load on the
 * machine still moves the figures, so compare rows of one run.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { WRITE_LEAN } from '../src/adapters/redis-scripts.js';
import { encodeMessage } from '../src/model/codec.js';
import { createIdGenerator, idTime } from '../src/model/ids.js';
import { CONTENT } from './raw.js';

const CALLS = 5000;
const ROUNDS = 3;
const next = createIdGenerator();
const item = () => {
  const id = next();
  return { id, payload: encodeMessage({ kind: 'append', user: 'u', id, thread: 'main', role: 'user', content: CONTENT, createdAt: idTime(id), tokens: 33 }) };
};

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function perCall(redis: Redis, command: string, run: (i: number) => Promise<unknown>): Promise<number> {
  await redis.config('RESETSTAT');
  for (let i = 0; i < CALLS; i++) await run(i);
  const line = (await redis.info('commandstats')).split('\n').find((l) => l.startsWith(`cmdstat_${command}:`)) ?? '';
  return Number(/usec_per_call=([\d.]+)/.exec(line)?.[1]);
}

async function main(): Promise<void> {
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const redis = new Redis({ port, lazyConnect: true, retryStrategy: () => 50 });
  redis.on('error', () => {}); // refused until the server listens
  try {
    for (let i = 0; i < 100 && redis.status !== 'ready'; i++) await redis.connect().catch(() => sleep(50));
    for (let u = 0; u < 100; u++) {
      await redis.rpush(`p:{u${u}}:h`, ...Array.from({ length: 50 }, () => item().payload));
      await redis.rpush(`raw:${u}`, ...Array.from({ length: 50 }, () => item().payload));
    }
    const sha = (await redis.script('LOAD', WRITE_LEAN)) as string;
    const script = (i: number) => {
      const u = `u${i % 100}`;
      const { id, payload } = item();
      const keys = [
        `p:{${u}}:h`,
        `p:{${u}}:d`,
        `p:{${u}}:m`,
        `p:{${u}}:j`,
        `p:{${u}}:i`,
        'p:{subs:0}:s',
        'p:{subs:0}:v',
        'p:{sync:0}:queue',
        'p:{sync:0}:queued',
        'p:{drafts:0}:z',
      ];
      return redis.evalsha(
        sha,
        keys.length,
        ...keys,
        'cache',
        50,
        3_600_000,
        3_600_000,
        86_400_000,
        'shared-here',
        Date.now(),
        'append',
        id,
        u,
        payload,
        '=',
        '',
        'main',
        '',
      );
    };
    const multi = (i: number) =>
      redis
        .multi()
        .rpush(`raw:${i % 100}`, item().payload)
        .ltrim(`raw:${i % 100}`, -50, -1)
        .pexpire(`raw:${i % 100}`, 3_600_000)
        .exec();
    console.log('usec per call, as Redis measured (INFO commandstats)');
    for (let r = 0; r < ROUNDS; r++) {
      const lean = await perCall(redis, 'evalsha', script);
      const exec = await perCall(redis, 'exec', multi);
      console.log(`round ${r + 1}: append script (write-behind, journaling) ${lean.toFixed(1)}; MULTI RPUSH+LTRIM+PEXPIRE (EXEC) ${exec.toFixed(1)}`);
    }
  } finally {
    redis.disconnect();
    server.kill('SIGKILL');
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
