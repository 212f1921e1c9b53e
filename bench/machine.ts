import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Services } from './services.js';

export interface Machine {
  cores: number;
  cpu: string;
  memoryGiB: number;
  os: string;
  node: string;
  redis: string;
  postgres: string;
  ioredis: string;
  postgresJs: string;
  /** 1, 5 and 15 minute load averages when the run started; other work on the machine skews figures. */
  loadAtStart: number[];
}

export async function machine(services: Services): Promise<Machine> {
  const info = await services.redis.info('server');
  const [{ server_version: pgVersion }] = (await services.sql`show server_version`) as unknown as [{ server_version: string }];
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    redis: /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown',
    postgres: pgVersion,
    ioredis: packageVersion('ioredis'),
    postgresJs: packageVersion('postgres'),
    loadAtStart: load(),
  };
}

export function load(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

function packageVersion(name: string): string {
  try {
    const file = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
