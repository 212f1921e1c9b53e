import type { Health, StoreStats } from '../../src/index.js';
import { Worker } from './worker.js';

export interface L1ProcessConfig {
  redisUrl: string;
  databaseUrl: string;
  keyPrefix: string;
  schema: string;
  /** 'off': the child runs with `l1: false`. */
  l1?: 'on' | 'off';
  writeMode?: 'write-through' | 'write-behind';
}

type Reply = { n: number; ok?: boolean; value?: unknown; error?: string };

const children = new Set<L1Process>();

/** A child process running one store (test/helpers/l1-worker.ts), driven command by command. */
export class L1Process {
  #n = 0;
  readonly #waiting = new Map<number, (reply: Reply) => void>();
  readonly ready: Promise<void>;
  readonly #worker: Worker;

  private constructor(
    readonly name: string,
    config: L1ProcessConfig,
  ) {
    let started!: () => void;
    this.ready = new Promise((resolve) => (started = resolve));
    const env = {
      REDIS_URL: config.redisUrl,
      DATABASE_URL: config.databaseUrl,
      KEY_PREFIX: config.keyPrefix,
      SCHEMA: config.schema,
      L1: config.l1 ?? 'on',
      WRITE_MODE: config.writeMode ?? 'write-through',
    };
    const onLine = (line: string) => {
      const reply = JSON.parse(line) as Reply;
      if (reply.n === 0) return started();
      this.#waiting.get(reply.n)?.(reply);
      this.#waiting.delete(reply.n);
    };
    this.#worker = new Worker('test/helpers/l1-worker.ts', env, onLine, { stdin: true });
    void this.#worker.exited.then((code) => {
      for (const resolve of this.#waiting.values()) resolve({ n: -1, error: `child ${name} exited (${code}): ${this.#worker.stderr}` });
      this.#waiting.clear();
      children.delete(this);
    });
  }

  static async start(name: string, config: L1ProcessConfig): Promise<L1Process> {
    const p = new L1Process(name, config);
    children.add(p);
    await p.ready;
    return p;
  }

  /** Runs one command in the child; rejects with the child's error. */
  call<T = unknown>(op: string, args: { user?: string; text?: string; id?: string; limit?: number } = {}): Promise<T> {
    const n = ++this.#n;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(n, (reply) => (reply.ok ? resolve(reply.value as T) : reject(new Error(`${this.name}.${op}: ${reply.error}`))));
      this.#worker.child.stdin!.write(`${JSON.stringify({ n, op, ...args })}\n`);
    });
  }

  add(user: string, text: string): Promise<string> {
    return this.call('add', { user, text });
  }

  /** The history as `id:content` strings, oldest first. */
  read(user: string, limit?: number): Promise<string[]> {
    return this.call('read', limit === undefined ? { user } : { user, limit });
  }

  health(): Promise<Health> {
    return this.call('health');
  }

  stats(): Promise<StoreStats> {
    return this.call('stats');
  }

  async close(): Promise<void> {
    if (this.#worker.child.exitCode !== null) return;
    await this.call('close').catch(() => {});
    await this.#worker.exited;
  }

  kill(): Promise<void> {
    return this.#worker.kill();
  }
}

export async function killL1Processes(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
}
