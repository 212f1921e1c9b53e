/*
 * Global setup shared by every test project: one run directory under the system temp dir
 * (TMPDIR points there for the test workers), and a teardown that stops by PID every process
 * the run started, removes the directory, and prints in one line what could not run and why.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStartTime, RUN_DIR_VAR, type TrackedProcess } from './run-registry.js';

const STATE = Symbol.for('tiered-conversation-store.test-run');
interface RunState {
  dir: string;
  users: number;
  tmpdir: string | undefined;
}
const state = globalThis as typeof globalThis & { [STATE]?: RunState };

export default function setup(): () => Promise<void> {
  let run = state[STATE];
  if (!run) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tcs-run-'));
    // Private servers run as the postgres user when the tests run as root: they must reach their files.
    chmodSync(dir, 0o755);
    run = { dir, users: 0, tmpdir: process.env.TMPDIR };
    state[STATE] = run;
    process.env[RUN_DIR_VAR] = dir;
    process.env.TMPDIR = dir;
  }
  run.users += 1;
  const current = run;
  return async () => {
    current.users -= 1;
    if (current.users > 0) return;
    await finish(current);
  };
}

/** The run ends before its tests (a service is missing): clean up now, whoever else set up. */
export async function abortRun(): Promise<void> {
  const current = state[STATE];
  if (current) await finish(current);
}

async function finish(current: RunState): Promise<void> {
  {
    delete state[STATE];
    await stopTracked(current.dir);
    const notRun = readLines(path.join(current.dir, 'not-run'));
    rmSync(current.dir, { recursive: true, force: true });
    delete process.env[RUN_DIR_VAR];
    if (current.tmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = current.tmpdir;
    if (notRun.length > 0) {
      console.log(`\n could not run ${notRun.length}: ${notRun.join('; ')}. Set TCS_TEST_REQUIRE_ALL=1 to make these failures.\n`);
    }
  }
}

function readLines(dir: string): string[] {
  try {
    return readdirSync(dir)
      .sort()
      .map((file) => readFileSync(path.join(dir, file), 'utf8').trim())
      .filter((line, i, all) => line && all.indexOf(line) === i);
  } catch {
    return [];
  }
}

/** Stops every tracked process still alive (and still the same process), politely then with SIGKILL. */
async function stopTracked(dir: string): Promise<void> {
  const alive: TrackedProcess[] = [];
  for (const text of readLines(path.join(dir, 'pids'))) {
    const entry = JSON.parse(text) as TrackedProcess;
    if (entry.startTime !== undefined && processStartTime(entry.pid) === entry.startTime) alive.push(entry);
  }
  if (alive.length === 0) return;
  for (const entry of alive) signal(entry.pid, entry.signal);
  for (let i = 0; i < 40 && alive.some((e) => processStartTime(e.pid) === e.startTime && !isZombie(e.pid)); i++) await sleep(50);
  const stubborn = alive.filter((e) => processStartTime(e.pid) === e.startTime && !isZombie(e.pid));
  for (const entry of stubborn) signal(entry.pid, 'SIGKILL');
  console.log(`test teardown: stopped ${alive.length} process(es) the tests left running: ${alive.map((e) => `${e.label} (pid ${e.pid})`).join(', ')}`);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}
