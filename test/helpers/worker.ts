import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Logger } from '../../src/index.js';

/**
 * A test's child process: `node --import tsx <script>` with `env` added, its stdout handed over
 * line by line (a last line cut off by a kill is never handed over), the end of its stderr kept.
 */
export class Worker {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  #stderr = '';

  constructor(script: string, env: NodeJS.ProcessEnv, onLine: (line: string) => void, options: { stdin?: boolean } = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, ...env },
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) onLine(line);
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.#stderr = (this.#stderr + chunk.toString()).slice(-4000)));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** The last 4000 characters of its stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** SIGKILL, and wait for the exit (nothing when it has already ended). */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }
}

// ---- inside a worker: what it says to the test, one line at a time

/** Writes one line to stdout, where the test's {@link Worker} reads it. */
export const out = (line: string): void => void process.stdout.write(`${line}\n`);

export const oneLine = (text: string): string => text.replace(/\s+/g, ' ');

/** The store's logger for a worker: every message as a `LOG <level> ...` line. */
export const workerLogger: Logger = {
  debug: () => {},
  info: (m) => out(`LOG info ${oneLine(m)}`),
  warn: (m) => out(`LOG warn ${oneLine(m)}`),
  error: (m) => out(`LOG error ${oneLine(m)}`),
};
