import type { PostgresAdapter } from '../adapters/postgres.js';
import type { JsonObject } from '../types.js';
import type { SealedField } from './cipher.js';
import type { KeyRing } from './keys.js';
import { isSealedValue, SealedAdapter } from './sealed.js';

/** One table encrypt-existing goes through: its key (the order and the cursor) and the columns it seals. */
interface Step {
  table: 'messages' | 'users' | 'threads' | 'summaries';
  key: [string] | [string, string];
  columns: { column: string; field: SealedField }[];
}

const STEPS: Step[] = [
  {
    table: 'messages',
    key: ['user_id', 'id'],
    columns: [
      { column: 'content', field: 'content' },
      { column: 'meta', field: 'meta' },
    ],
  },
  {
    table: 'users',
    key: ['user_id'],
    columns: [
      { column: 'phone', field: 'phone' },
      { column: 'booking', field: 'booking' },
    ],
  },
  { table: 'threads', key: ['user_id', 'thread'], columns: [{ column: 'title', field: 'title' }] },
  { table: 'summaries', key: ['user_id', 'thread'], columns: [{ column: 'text', field: 'summary' }] },
];

export interface EncryptExistingOptions {
  /** Bound and connected. */
  postgres: PostgresAdapter;
  ring: KeyRing;
  /** Rows read per batch. */
  batch: number;
  /** After each batch that changed rows: the users whose rows it sealed (the CLI drops their hot copies in Redis). */
  afterBatch?: (users: Set<string>) => Promise<void>;
  /** Stop after this many batches (the next run resumes where this one stopped). */
  maxBatches?: number;
  /** @internal Between reading a batch and writing it (tests race a concurrent edit here). */
  beforeWrite?: (rows: readonly Record<string, unknown>[]) => Promise<void>;
}

export interface EncryptExistingReport {
  /** Per table: rows read, rows sealed, rows another writer changed meanwhile (left as they now are). */
  tables: Record<Step['table'], { read: number; sealed: number; changedMeanwhile: number }>;
  batches: number;
  /** Whether the run reached the end of every table (false: stopped by maxBatches; run again to resume). */
  done: boolean;
}

/**
 * Seals the plaintext values PostgreSQL holds from before encryption was on, table by table in
 * batches of rows in key order. Resumable: after each batch the key of its last row is kept in
 * `encrypt_progress`, and a run starts from there. Safe while bots write: each row is updated only
 * if the columns it seals still hold what the batch read (a concurrent edit, itself sealed, wins).
 */
/** A report of nothing done yet. */
export function emptyReport(): EncryptExistingReport {
  const none = () => ({ read: 0, sealed: 0, changedMeanwhile: 0 });
  return { tables: { messages: none(), users: none(), threads: none(), summaries: none() }, batches: 0, done: false };
}

export async function encryptExisting(options: EncryptExistingOptions): Promise<EncryptExistingReport> {
  const { postgres, batch } = options;
  const sealer = new SealedAdapter(postgres, options.ring);
  const sql = postgres.sql;
  const progress = sql(`${postgres.schema}.encrypt_progress`);
  const report = emptyReport();
  const saved = new Map((await sql`select step, cursor from ${progress}`).map((r) => [r.step as string, JSON.parse(r.cursor as string) as string[]]));
  for (const step of STEPS) {
    const counts = report.tables[step.table];
    const table = sql(`${postgres.schema}.${step.table}`);
    const [k1, k2] = step.key;
    const columns = step.columns.map((c) => c.column);
    let cursor = saved.get(step.table);
    if (cursor?.[0] === '') continue; // this table was finished by an earlier run
    for (;;) {
      if (options.maxBatches !== undefined && report.batches >= options.maxBatches) return report;
      const after = cursor ?? step.key.map(() => '');
      const rows =
        k2 === undefined
          ? await sql`select ${sql([k1, ...columns])} from ${table} where ${sql(k1)} > ${after[0] ?? ''}::text collate "C" order by ${sql(k1)} limit ${batch}`
          : await sql`select ${sql([k1, k2, ...columns])} from ${table}
              where (${sql(k1)}, ${sql(k2)}) > (${after[0] ?? ''}::text collate "C", ${after[1] ?? ''}::text collate "C")
              order by ${sql(k1)}, ${sql(k2)} limit ${batch}`;
      if (rows.length === 0) break;
      report.batches++;
      counts.read += rows.length;
      await options.beforeWrite?.(rows);
      const users = new Set<string>();
      for (const row of rows) {
        const user = row.user_id as string;
        const changes: { column: string; from: string | JsonObject; to: string | JsonObject }[] = [];
        for (const { column, field } of step.columns) {
          const value = row[column] as string | JsonObject | null;
          if (value === null || isSealedValue(value)) continue;
          changes.push({ column, from: value, to: await sealer.sealValue(user, field, value) });
        }
        if (changes.length === 0) continue;
        const value = (v: string | JsonObject) => (typeof v === 'string' ? sql`${v}` : sql`${sql.json(v)}::jsonb`);
        const set = changes.map((c) => sql`${sql(c.column)} = ${value(c.to)}`).reduce((a, b) => sql`${a}, ${b}`);
        const unchanged = changes.map((c) => sql`and ${sql(c.column)} = ${value(c.from)}`).reduce((a, b) => sql`${a} ${b}`);
        const where = k2 === undefined ? sql`${sql(k1)} = ${row[k1] as string}` : sql`${sql(k1)} = ${row[k1] as string} and ${sql(k2)} = ${row[k2] as string}`;
        const updated = await sql`update ${table} set ${set} where ${where} ${unchanged} returning 1`;
        if (updated.length > 0) {
          counts.sealed++;
          users.add(user);
        } else counts.changedMeanwhile++;
      }
      const last = rows[rows.length - 1] as Record<string, unknown>;
      cursor = step.key.map((k) => last[k] as string);
      await sql`insert into ${progress} (step, cursor) values (${step.table}, ${JSON.stringify(cursor)})
        on conflict (step) do update set cursor = excluded.cursor`;
      if (users.size > 0) await options.afterBatch?.(users);
    }
    // Finished: an empty key marks it, so a resumed run goes on with the next table.
    await sql`insert into ${progress} (step, cursor) values (${step.table}, ${JSON.stringify([''])})
      on conflict (step) do update set cursor = excluded.cursor`;
  }
  await sql`delete from ${progress}`;
  report.done = true;
  return report;
}
