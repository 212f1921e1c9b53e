import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { answers, freePort } from './ports.js';
import { findProgram, isRoot, trackProcess } from './run-registry.js';

/** Why PgBouncer cannot run here, or undefined when it can. */
export function missingPgBouncer(): string | undefined {
  return findProgram('pgbouncer') ? undefined : 'pgbouncer is not installed; apt-get install pgbouncer as root';
}

/**
 * A PgBouncer of the test's own in transaction pooling mode, in front of the test PostgreSQL.
 * Runs as the current user; as root (which pgbouncer refuses) it drops to the postgres user.
 */
export class PgBouncer {
  private constructor(
    readonly port: number,
    readonly database: string,
    readonly process: ChildProcess,
    readonly dir: string,
  ) {}

  static async start(databaseUrl: string): Promise<PgBouncer> {
    const target = new URL(databaseUrl);
    const database = target.pathname.slice(1) || 'postgres';
    const port = await freePort();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tcs-pgbouncer-'));
    if (isRoot()) chmodSync(dir, 0o777); // pgbouncer refuses to run as root and drops to the postgres user
    const config = path.join(dir, 'pgbouncer.ini');
    writeFileSync(
      config,
      [
        '[databases]',
        `${database} = host=${target.hostname} port=${target.port || 5432} dbname=${database} user=${decodeURIComponent(target.username) || 'postgres'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = any',
        'pool_mode = transaction',
        'default_pool_size = 4',
        'max_client_conn = 200',
        'ignore_startup_parameters = extra_float_digits',
        `logfile = ${path.join(dir, 'pgbouncer.log')}`,
        `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      ].join('\n'),
    );
    const child = spawn(findProgram('pgbouncer') ?? 'pgbouncer', isRoot() ? ['-u', 'postgres', config] : [config], { stdio: 'ignore' });
    trackProcess(child.pid, 'pgbouncer');
    const bouncer = new PgBouncer(port, database, child, dir);
    for (let i = 0; i < 100; i++) {
      if (await answers(port)) return bouncer;
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    const log = (() => {
      try {
        return readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8').slice(-2000);
      } catch {
        return '';
      }
    })();
    await bouncer.stop();
    throw new Error(`pgbouncer did not start on port ${port}${child.exitCode === null ? '' : ` (it exited with ${child.exitCode})`}\n${log}`);
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${this.database}`;
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null) {
      const exited = new Promise((resolve) => this.process.once('exit', resolve));
      this.process.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
