import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { answers, freePort } from './ports.js';

/** A throwaway certificate authority and a server certificate for 127.0.0.1, made with openssl. */
export function makeCertificates(dir: string): { ca: Buffer; cert: string; key: string; caFile: string } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tcs-test-ca');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf');
  return { ca: readFileSync(path.join(dir, 'ca.crt')), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key'), caFile: path.join(dir, 'ca.crt') };
}

/** A private redis-server speaking only TLS, and a private PostgreSQL 15 cluster with ssl = on. */
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
    chmodSync(dir, 0o755);
    const certs = makeCertificates(dir);
    const redisPort = await freePort();
    const redis = spawn('redis-server', ['--port', '0', '--tls-port', String(redisPort), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key,
      '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    // PostgreSQL refuses to run as root: its files belong to the postgres user.
    const pgData = path.join(dir, 'pg');
    const pgPort = await freePort();
    const bin = `/usr/lib/postgresql/${execFileSync('ls', ['/usr/lib/postgresql']).toString().trim().split('\n').pop()}/bin`;
    const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres']).toString()));
    mkdirSync(pgData);
    for (const file of ['server.crt', 'server.key', 'pg']) chownSync(path.join(dir, file), uid as number, gid as number);
    chmodSync(path.join(dir, 'server.key'), 0o600);
    const asPostgres = (command: string, args: string[]) => execFileSync('runuser', ['-u', 'postgres', '--', `${bin}/${command}`, ...args], { stdio: 'ignore' });
    asPostgres('initdb', ['-D', pgData, '-A', 'trust', '-U', 'postgres']);
    writeFileSync(path.join(pgData, 'postgresql.auto.conf'), [`port = ${pgPort}`, "listen_addresses = '127.0.0.1'", "unix_socket_directories = ''", 'ssl = on',
      `ssl_cert_file = '${certs.cert}'`, `ssl_key_file = '${certs.key}'`].join('\n'));
    asPostgres('pg_ctl', ['-D', pgData, '-l', path.join(pgData, 'server.log'), '-w', 'start']);
    const servers = new TlsServers(dir, certs.ca, redisPort, pgPort, redis, pgData);
    for (let i = 0; i < 100 && !(await answers(redisPort)); i++) await sleep(50);
    return servers;
  }

  get redisUrl(): string {
    return `rediss://127.0.0.1:${this.redisPort}`;
  }

  get databaseUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.pgPort}/postgres?sslmode=require`;
  }

  async stop(): Promise<void> {
    this.redis.kill('SIGKILL');
    const bin = `/usr/lib/postgresql/${execFileSync('ls', ['/usr/lib/postgresql']).toString().trim().split('\n').pop()}/bin`;
    try {
      execFileSync('runuser', ['-u', 'postgres', '--', `${bin}/pg_ctl`, '-D', this.pgData, '-m', 'immediate', 'stop'], { stdio: 'ignore' });
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
