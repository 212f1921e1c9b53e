/*
 * What a test run started, so that nothing outlives it: every process a test spawns
 * (private redis-server, Cluster nodes, pgbouncer, a private PostgreSQL) is written down
 * here by PID, and the run's global teardown stops each one, passing or failing.
 * Temp dirs live in the run directory (TMPDIR points there during a run), removed whole.
 * Tests that cannot run on this machine are written down too, with the reason; the
 * teardown prints them in one line, and TCS_TEST_REQUIRE_ALL=1 makes them failures.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'vitest';

export const RUN_DIR_VAR = 'TCS_TEST_RUN_DIR';
export const REQUIRE_ALL_VAR = 'TCS_TEST_REQUIRE_ALL';

/** The directory of the current run, or undefined outside a configured run (then nothing is tracked). */
export function runDir(): string | undefined {
  const dir = process.env[RUN_DIR_VAR];
  return dir && existsSync(dir) ? dir : undefined;
}

export interface TrackedProcess {
  pid: number;
  /** What it is, for the teardown's report. */
  label: string;
  /** Signal for an orderly stop (PostgreSQL wants SIGQUIT for an immediate shutdown). */
  signal: NodeJS.Signals;
  /** /proc start time, so a reused PID is never killed by mistake. */
  startTime: string | undefined;
}

/** Writes down a process this run started; the global teardown stops it if it still runs. */
export function trackProcess(pid: number | undefined, label: string, signal: NodeJS.Signals = 'SIGTERM'): void {
  const dir = runDir();
  if (!dir || pid === undefined) return;
  const entry: TrackedProcess = { pid, label, signal, startTime: processStartTime(pid) };
  mkdirSync(path.join(dir, 'pids'), { recursive: true });
  writeFileSync(path.join(dir, 'pids', String(pid)), JSON.stringify(entry));
}

/** The kernel's start time of a process (field 22 of /proc/PID/stat), undefined when gone or not Linux. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** A program on PATH (or at an absolute path), or undefined. */
export function findProgram(name: string): string | undefined {
  if (path.isAbsolute(name)) return isExecutable(name) ? name : undefined;
  // Debian installs daemons such as pgbouncer in sbin, which a normal user's PATH leaves out.
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/** The PostgreSQL server programs (initdb, pg_ctl, postgres): PATH first, then Debian's layout. */
export function postgresBinDir(): string | undefined {
  const onPath = findProgram('initdb');
  if (onPath && findProgram(path.join(path.dirname(onPath), 'pg_ctl'))) return path.dirname(onPath);
  try {
    const versions = execFileSync('ls', ['/usr/lib/postgresql'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
      .split('\n');
    for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
      const bin = `/usr/lib/postgresql/${version}/bin`;
      if (isExecutable(path.join(bin, 'initdb'))) return bin;
    }
  } catch {
    // not Debian's layout
  }
  return undefined;
}

/** Why redis-server cannot be used for private servers here, or undefined when it can. */
export function missingRedisServer(): string | undefined {
  return findProgram('redis-server') && findProgram('redis-cli')
    ? undefined
    : 'redis-server/redis-cli are not installed (apt-get install redis-server, or put them on PATH)';
}

/**
 * A describe() that needs something this machine may not have. With `missing` undefined it is a
 * plain describe. Otherwise its tests are reported as not runnable with the reason (one line at the
 * end of the run), or fail with it when TCS_TEST_REQUIRE_ALL=1 (CI runs everything).
 */
export function describeIfAble(name: string, missing: string | undefined, body: () => void): void {
  if (!missing) {
    describe(name, body);
    return;
  }
  if (process.env[REQUIRE_ALL_VAR] === '1') {
    describe(name, () => {
      it('can run on this machine', () => {
        throw new Error(`cannot run: ${missing} (${REQUIRE_ALL_VAR}=1 makes this a failure)`);
      });
    });
    return;
  }
  recordNotRunnable(`${callerFile()}: ${name}`, missing);
  // Listed in the end-of-run line (recorded above), never silent.
  describe.skipIf(true)(name, body);
}

/** Writes down a test that could not run, for the summary line at the end of the run. */
export function recordNotRunnable(what: string, reason: string): void {
  const dir = runDir();
  const line = `${what} (${reason})`;
  if (!dir) {
    console.warn(`could not run: ${line}`);
    return;
  }
  mkdirSync(path.join(dir, 'not-run'), { recursive: true });
  writeFileSync(path.join(dir, 'not-run', `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2)}`), line);
}

function callerFile(): string {
  const stack = new Error().stack?.split('\n') ?? [];
  for (const frame of stack.slice(1)) {
    const match = /(test\/[^:)]+\.test\.ts)/.exec(frame);
    if (match?.[1]) return match[1];
  }
  return 'a test file';
}

export const tmpRoot = (): string => os.tmpdir();

/** `it`, or, when `missing` says why it cannot run here, an `it` that reports (or under TCS_TEST_REQUIRE_ALL=1 fails). */
export function itIfAble(missing: string | undefined): typeof it {
  if (!missing) return it;
  const file = callerFile();
  const replacement = (name: string, ...rest: unknown[]) => {
    if (process.env[REQUIRE_ALL_VAR] === '1') {
      return it(name, () => {
        throw new Error(`cannot run: ${missing} (${REQUIRE_ALL_VAR}=1 makes this a failure)`);
      });
    }
    recordNotRunnable(`${file}: ${name}`, missing);
    return (it.skipIf(true) as (...args: unknown[]) => unknown)(name, ...rest);
  };
  return replacement as unknown as typeof it;
}
