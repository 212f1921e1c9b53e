import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** A run that takes longer than this is a hang: killed, and the test fails with what it printed. */
const HARD_LIMIT_MS = 30_000;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/**
 * The CLI built as the package builds it (tsup, ESM, ioredis and postgres external), into a
 * directory of its own under node_modules/.cache: the peers resolve from there as they would
 * from an installed package, and the repository's dist/ is left alone.
 */
export class BuiltCli {
  readonly #children = new Set<ChildProcess>();

  private constructor(readonly dir: string) {}

  static async build(): Promise<BuiltCli> {
    const cache = join(ROOT, 'node_modules', '.cache');
    await mkdir(cache, { recursive: true });
    const dir = await mkdtemp(join(cache, 'tcs-cli-test-'));
    const tsup = join(ROOT, 'node_modules', '.bin', 'tsup');
    const args = [
      '--entry.cli',
      'src/cli/main.ts',
      '--no-config',
      '--format',
      'esm',
      '--target',
      'node20',
      '--platform',
      'node',
      '--out-dir',
      dir,
      '--external',
      'ioredis',
      '--external',
      'postgres',
      '--silent',
    ];
    await promisify(execFile)(tsup, args, { cwd: ROOT });
    // The package is "type": "module"; the build directory says so too (node_modules ends the lookup).
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
    return new BuiltCli(dir);
  }

  /** The same binary copied outside the repository, where neither ioredis nor postgres resolves: a project without the peers. */
  async withoutPeers(): Promise<BuiltCli> {
    const dir = await mkdtemp(join(tmpdir(), 'tcs-cli-no-peers-'));
    await copyFile(this.path, join(dir, 'cli.js'));
    await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n');
    return new BuiltCli(dir);
  }

  get path(): string {
    return join(this.dir, 'cli.js');
  }

  /** Runs `node cli.js ...args` with exactly `env` (plus PATH and HOME) and collects what it printed. */
  run(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
    return this.spawn(process.execPath, [this.path, ...args], env);
  }

  /** Runs `command` under a pseudo-terminal (util-linux `script`), so stdout is a TTY. */
  runOnTty(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
    const command = [process.execPath, this.path, ...args].map(shellQuote).join(' ');
    return this.spawn('script', ['-qefc', command, '/dev/null'], env);
  }

  /** Kills whatever is still running (a failed test may leave a child behind). */
  async close(): Promise<void> {
    for (const child of this.#children) child.kill('SIGKILL');
    await rm(this.dir, { recursive: true, force: true });
  }

  spawn(command: string, args: string[], env: Record<string, string>): Promise<CliRun> {
    const started = performance.now();
    const child = spawn(command, args, { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${args.join(' ')} still running after ${HARD_LIMIT_MS} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
      }, HARD_LIMIT_MS);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        this.#children.delete(child);
        resolve({ code, stdout, stderr, elapsedMs: performance.now() - started });
      });
    });
  }
}

/** Nothing of the parent's store configuration leaks into a run: each test says what it sets. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'LANG', 'TMPDIR', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
