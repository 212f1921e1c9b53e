import { BIN } from './args.js';
import type { TierFacts } from './calls.js';
import type { DoctorReport } from './doctor.js';
import type { PostgresFacts } from './doctor-postgres.js';
import type { RedisFacts } from './doctor-redis.js';
import { count, duration, list, plural } from './output.js';

const UNKNOWN = 'unknown (see problems)';

/** The report for people: one block per tier, then one line that says whether all is well. */
export function renderDoctor(report: DoctorReport): string[] {
  return [
    `${BIN} doctor: key prefix "${report.keyPrefix}", schema "${report.schema}", deadline ${report.timeoutMs} ms per call`,
    '',
    ...(report.redis.configured ? redisBlock(report.redis, report.keyPrefix) : ['redis: not configured (REDIS_URL, REDIS_PUBLIC_URL or REDISHOST)']),
    ...(report.postgres.configured ? postgresBlock(report.postgres) : ['postgres: not configured (DATABASE_URL, DATABASE_PUBLIC_URL or PGHOST)']),
    memoryLine(report),
    report.encryption.configured
      ? `encryption: keys ${report.encryption.keyIds.join(', ')} (current ${report.encryption.current})${report.encryption.allowPlaintext ? ', plaintext from before still read (allowPlaintext)' : ''}`
      : 'encryption: not configured (STORE_ENCRYPTION_KEYS)',
    '',
    verdict(report),
  ];
}

function redisBlock(facts: RedisFacts, keyPrefix: string): string[] {
  const lines = header('redis', facts, 'pings');
  if (!facts.reachable) return lines;
  const mode = facts.mode ?? (facts.cluster ? 'cluster' : 'standalone');
  lines.push(row('server', facts.version ? `Redis ${facts.version}, ${mode}` : UNKNOWN));
  lines.push(row('pending', facts.pending === null ? UNKNOWN : `${plural(facts.pending, 'write')} in the journal, waiting for PostgreSQL`));
  lines.push(row('hot users', hotUsers(facts, keyPrefix)));
  lines.push(row('invalidation', invalidation(facts)));
  for (const warning of facts.warnings) lines.push(row('warning', warning));
  return [...lines, ...problems(facts)];
}

function postgresBlock(facts: PostgresFacts): string[] {
  const lines = header('postgres', facts, 'queries');
  if (!facts.reachable) return lines;
  lines.push(row('server', facts.version ? `PostgreSQL ${facts.version}` : UNKNOWN));
  lines.push(row('migrations', migrations(facts)));
  lines.push(row('users', users(facts)));
  lines.push(row('dead letters', facts.deadLetters === null ? UNKNOWN : facts.deadLetters === 0 ? 'none recorded' : count(facts.deadLetters)));
  return [...lines, ...problems(facts)];
}

function header(tier: string, facts: TierFacts, pings: string): string[] {
  const reachable = facts.reachable
    ? `yes, round trip ${facts.latencyMs === null ? 'unknown' : duration(facts.latencyMs)} (median of 5 ${pings})`
    : `NO: ${facts.error ?? 'no answer'}`;
  return [`${tier}: ${facts.url} (from ${facts.source})`, row('reachable', reachable)];
}

function hotUsers(facts: RedisFacts, keyPrefix: string): string {
  if (facts.hotUsers === null) return UNKNOWN;
  const where = facts.cluster ? ', this node only' : '';
  return `${facts.hotUsersComplete ? '' : 'at least '}${count(facts.hotUsers)} (keys ${keyPrefix}:{user}:m${where})`;
}

function invalidation(facts: RedisFacts): string {
  switch (facts.invalidation) {
    case 'works':
      return `works: a change under the prefix reached a tracking connection in ${duration(facts.invalidationMs ?? 0)} (the in-process tier stays coherent)`;
    case 'failed':
      return 'FAILED (see problems): stores cannot keep the in-process tier (L1) coherent';
    default:
      return UNKNOWN;
  }
}

function migrations(facts: PostgresFacts): string {
  const m = facts.migrations;
  if (!m) return UNKNOWN;
  const shipped = list(m.shipped);
  switch (m.state) {
    case 'not migrated yet':
      return `not migrated yet (this package ships ${shipped}; a store applies them on first connect, or run "${BIN} migrate")`;
    case 'behind':
      return `${list(m.applied)} applied, ${list(m.missing)} not yet (a store applies them on first connect, or run "${BIN} migrate")`;
    case 'ahead':
      return `${list(m.applied)} applied; this package ships ${shipped}: a newer version of it migrated this schema`;
    default:
      return `${list(m.applied)} applied: up to date`;
  }
}

function users(facts: PostgresFacts): string {
  if (facts.migrations?.state === 'not migrated yet' && facts.users === null) return 'none (no tables yet)';
  if (facts.users === null || facts.subscribers === null) return UNKNOWN;
  return `${count(facts.users)} (${count(facts.subscribers)} subscribed)`;
}

function memoryLine(report: DoctorReport): string {
  if (report.memoryOnly) return 'memory: the only tier: a store from this environment keeps data in RAM and loses it on restart';
  return 'memory: fallback while the servers are down';
}

function problems(facts: TierFacts): string[] {
  return facts.problems.map((problem) => row('problem', problem));
}

function verdict(report: DoctorReport): string {
  if (report.memoryOnly) return 'ok: memory only (nothing configured; set REDIS_URL and/or DATABASE_URL to use servers)';
  const down = [report.redis, report.postgres].flatMap((tier, i) => (tier.configured && !tier.reachable ? [i === 0 ? 'redis' : 'postgres'] : []));
  if (down.length > 0) return `problem: ${down.join(' and ')} ${down.length === 1 ? 'is' : 'are'} unreachable`;
  return 'ok: every configured tier answers';
}

function row(label: string, value: string): string {
  return `  ${label.padEnd(13)} ${value}`;
}
