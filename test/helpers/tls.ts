import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { answers, freePort } from './ports.js';
import { findProgram, isRoot, missingRedisServer, postgresBinDir, trackProcess } from './run-registry.js';

/** A throwaway certificate authority and a server certificate for 127.0.0.1, made with openssl. */
export function makeCertificates(dir: string): { ca: Buffer; cert: string; key: string; caFile: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tcs-test-ca');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
  chmodSync(path.join(dir, 'server.key'), 0o600);
  return {
    ca: readFileSync(path.join(dir, 'ca.crt')),
    cert: path.join(dir, 'server.crt'),
    key: path.join(dir, 'server.key'),
    caFile: path.join(dir, 'ca.crt'),
  };
}

/** Why the TLS servers cannot start on this machine, or undefined when they can. */
export function missingForTls(): string | undefined {
  if (!findProgram('openssl')) return 'openssl is not installed (apt-get install openssl)';
  const redis = missingRedisServer();
  if (redis) return redis;
  if (!postgresBinDir()) return 'the PostgreSQL server programs (initdb, pg_ctl) are not installed (apt-get install postgresql)';
  if (isRoot() && !userExists('postgres')) return 'running as root, and there is no postgres user to run the private PostgreSQL as (PostgreSQL refuses root)';
  return undefined;
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A private redis-server speaking only TLS, and a private PostgreSQL cluster with ssl = on, in a
 * directory of the current user. PostgreSQL runs as the current user, or as the postgres user when
 * the tests run as root (it refuses root). Both processes are tracked: the run's teardown stops them
 * even when start() fails half-way.
 */
export class TlsServers {
  private constructor(
    readonly dir: string,
    readonly ca: Buffer,
    readonly redisPort: number,
    readonly pgPort: number,
    readonly redis: ChildProcess,
    readonly pgData: string,
  ) {}

  static async start(): Promise<TlsServers> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tcs-tls-'));
    let redis: ChildProcess | undefined;
    const pgData = path.join(dir, 'pg');
    try {
      const certs = makeCertificates(dir);
      const redisPort = await freePort();
      redis = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--tls-port',
          String(redisPort),
          '--tls-cert-file',
          certs.cert,
          '--tls-key-file',
          certs.key,
          '--tls-ca-cert-file',
          certs.caFile,
          '--tls-auth-clients',
          'no',
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
        ],
        { stdio: 'ignore' },
      );
      trackProcess(redis.pid, 'TLS redis-server', 'SIGKILL');
      const pgPort = await freePort();
      mkdirSync(pgData);
      if (isRoot()) {
        // PostgreSQL refuses to run as root: as root only, its files go to the postgres user.
        chmodSync(dir, 0o755);
        const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres']).toString()));
        for (const file of ['server.crt', 'server.key', 'pg']) chownSync(path.join(dir, file), uid as number, gid as number);
      }
      runPostgresTool('initdb', ['-D', pgData, '-A', 'trust', '-U', 'postgres']);
      writeFileSync(
        path.join(pgData, 'postgresql.auto.conf'),
        [
          `port = ${pgPort}`,
          "listen_addresses = '127.0.0.1'",
          "unix_socket_directories = ''",
          'ssl = on',
          `ssl_cert_file = '${certs.cert}'`,
          `ssl_key_file = '${certs.key}'`,
        ].join('\n'),
      );
      runPostgresTool('pg_ctl', ['-D', pgData, '-l', path.join(pgData, 'server.log'), '-w', 'start']);
      trackProcess(postmasterPid(pgData), 'TLS PostgreSQL (postgres -D)', 'SIGQUIT');
      const servers = new TlsServers(dir, certs.ca, redisPort, pgPort, redis, pgData);
      for (let i = 0; i < 100 && !(await answers(redisPort)); i++) await sleep(50);
      return servers;
    } catch (error) {
      redis?.kill('SIGKILL');
      await stopPostgres(pgData);
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get redisUrl(): string {
    return `rediss://127.0.0.1:${this.redisPort}`;
  }

  get databaseUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.pgPort}/postgres?sslmode=require`;
  }

  async stop(): Promise<void> {
    this.redis.kill('SIGKILL');
    await stopPostgres(this.pgData);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs a PostgreSQL server program as the current user, or as postgres when root. */
function runPostgresTool(command: string, args: string[]): void {
  const program = path.join(postgresBinDir() ?? '', command);
  const [file, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
  try {
    execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const output = error as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`${command} failed: ${String(output.stderr ?? '').trim() || String(output.stdout ?? '').trim() || String(error)}`);
  }
}

function postmasterPid(pgData: string): number | undefined {
  try {
    return Number(readFileSync(path.join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

/** Immediate shutdown (SIGQUIT, as pg_ctl -m immediate), waiting up to 5 s for the postmaster to go. */
async function stopPostgres(pgData: string): Promise<void> {
  const pid = postmasterPid(pgData);
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGQUIT');
    for (let i = 0; i < 100; i++) {
      process.kill(pid, 0);
      await sleep(50);
    }
  } catch {
    // stopped
  }
}
