import { encryptionFromEnv, postgresFromEnv, redisFromEnv } from '../env.js';
import { KeyRing } from '../crypto/keys.js';
import type { Flags } from './args.js';
import type { NotConfigured } from './calls.js';
import { checkPostgres, type PostgresFacts } from './doctor-postgres.js';
import { checkRedis, type RedisFacts } from './doctor-redis.js';
import { renderDoctor } from './doctor-text.js';
import { Exit } from './errors.js';
import type { Output } from './output.js';

type Env = Record<string, string | undefined>;

/** Everything doctor found; `--json` prints it as it is. */
export interface DoctorReport {
  /** False when a configured tier does not answer. */
  ok: boolean;
  /** Neither Redis nor PostgreSQL is configured: a store from this environment keeps data in RAM only. */
  memoryOnly: boolean;
  keyPrefix: string;
  schema: string;
  timeoutMs: number;
  redis: RedisFacts | NotConfigured;
  postgres: PostgresFacts | NotConfigured;
  /** Encryption at rest from STORE_ENCRYPTION_KEYS: the key ids only, never a key. */
  encryption: EncryptionFacts | NotConfigured;
}

export interface EncryptionFacts {
  configured: true;
  keyIds: string[];
  current: string;
  allowPlaintext: boolean;
}

const ABSENT: NotConfigured = { configured: false };

export async function doctor(flags: Flags, env: Env, output: Output): Promise<number> {
  const report = await examine(flags, env, output);
  if (flags.json) output.out(JSON.stringify(report, null, 2));
  else for (const line of renderDoctor(report)) output.out(line);
  return report.ok ? Exit.OK : Exit.FAILED;
}

async function examine(flags: Flags, env: Env, output: Output): Promise<DoctorReport> {
  // Both read first: an unusable variable is a configuration error before any connection.
  const redisTarget = redisFromEnv(env);
  const postgresTarget = postgresFromEnv(env);
  const keys = encryptionFromEnv(env);
  // Checked as a store would check it (a current id that is not listed is a configuration error).
  const encryption: EncryptionFacts | NotConfigured = keys
    ? { configured: true, keyIds: Object.keys(keys.keys), current: new KeyRing(keys).current, allowPlaintext: keys.allowPlaintext ?? false }
    : ABSENT;
  const { keyPrefix, schema, timeoutMs } = flags;
  const [redis, postgres] = await Promise.all([
    redisTarget ? checkRedis(redisTarget, { keyPrefix, timeoutMs, output }) : ABSENT,
    postgresTarget ? checkPostgres(postgresTarget, { schema, timeoutMs, output }) : ABSENT,
  ]);
  const ok = [redis, postgres].every((tier) => !tier.configured || tier.reachable);
  return { ok, memoryOnly: !redis.configured && !postgres.configured, keyPrefix, schema, timeoutMs, redis, postgres, encryption };
}
