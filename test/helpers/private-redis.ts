import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { answers, freePort } from './ports.js';
import { trackProcess } from './run-registry.js';

/**
 * A redis-server of the test's own, to crash and restart: empty (nothing on disk), or with
 * `appendOnly`, keeping every acknowledged command in an fsynced append-only file.
 */
export class PrivateRedis {
  #process: ChildProcess | undefined;
  readonly #dir = mkdtempSync(path.join(os.tmpdir(), 'tcs-redis-'));

  private constructor(
    readonly port: number,
    readonly password: string | undefined,
    readonly appendOnly = false,
  ) {}

  static async start(options: { password?: string; appendOnly?: boolean } = {}): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort(), options.password, options.appendOnly);
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://${this.password ? `default:${this.password}@` : ''}127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--dir', this.#dir];
    args.push(...(this.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
    if (this.password) args.push('--requirepass', this.password);
    this.#process = spawn('redis-server', args, { stdio: 'ignore' });
    trackProcess(this.#process.pid, 'private redis-server', 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      if (await answers(this.port)) return;
      await sleep(50);
    }
    throw new Error(`private redis-server on port ${this.port} did not start`);
  }

  /** A crash: SIGKILL, everything it held is gone. */
  async kill(): Promise<void> {
    const child = this.#process;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
