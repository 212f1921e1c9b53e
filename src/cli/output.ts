import { Secrets } from '../logger.js';
import type { Logger } from '../types.js';

type Env = Record<string, string | undefined>;

export interface Stream {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Every variable that may hold a password: each is masked wherever it shows up. */
const SECRET_VARIABLES = ['REDIS_URL', 'REDIS_PUBLIC_URL', 'REDISPASSWORD', 'DATABASE_URL', 'DATABASE_PUBLIC_URL', 'PGPASSWORD'];

/** The CLI's only way to print: stdout for results, stderr for trouble, both through the secrets mask. */
export class Output {
  readonly secrets = new Secrets();

  constructor(
    env: Env,
    readonly stdout: Stream = process.stdout,
    readonly stderr: Stream = process.stderr,
  ) {
    for (const name of SECRET_VARIABLES) this.secrets.add(env[name]?.trim());
    // Encryption keys (id:key,id:key): every key is masked too.
    for (const item of env.STORE_ENCRYPTION_KEYS?.split(',') ?? []) this.secrets.add(item.slice(item.indexOf(':') + 1).trim());
  }

  out(line = ''): void {
    this.stdout.write(`${this.mask(line)}\n`);
  }

  err(line: string): void {
    this.stderr.write(`${this.mask(line)}\n`);
  }

  mask(text: string): string {
    return this.secrets.mask(text);
  }

  /** An error's message, masked; a code the message does not name is added. */
  describe(error: unknown): string {
    if (!(error instanceof Error)) return this.mask(String(error));
    const code = (error as { code?: unknown }).code;
    const message = error.message || error.name;
    return this.mask(typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message);
  }

  /** The store's warnings and errors on stderr; its info and debug lines would repeat what the CLI says. */
  logger(): Logger {
    const noop = () => {};
    return { debug: noop, info: noop, warn: (m: string) => this.err(`warning: ${m}`), error: (m: string) => this.err(`error: ${m}`) };
  }
}

const NUMBER = new Intl.NumberFormat('en-US');

export function count(n: number): string {
  return NUMBER.format(n);
}

/** `3 messages`, `1 message`. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

export function duration(ms: number): string {
  if (ms < 10 && !Number.isInteger(ms)) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

export function list(items: readonly (string | number)[]): string {
  return items.length === 0 ? 'none' : items.join(', ');
}
