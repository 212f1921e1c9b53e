import { BIN, COMMANDS, DEFAULT_TIMEOUT_MS, type Command } from './args.js';

const ENVIRONMENT = `Environment (read as TieredStore.fromEnv reads it):
  Redis         REDIS_URL, else REDIS_PUBLIC_URL, else REDISHOST + REDISPORT (+ REDISUSER, REDISPASSWORD)
  PostgreSQL    DATABASE_URL, else DATABASE_PUBLIC_URL, else PGHOST / PGPORT / PGUSER / PGPASSWORD / PGDATABASE
  STORE_KEY_PREFIX, STORE_SCHEMA   defaults of --key-prefix and --schema
  STORE_ENCRYPTION_KEYS   encryption at rest: id:key,id:key (32-byte keys, base64 or hex); with
                STORE_ENCRYPTION_CURRENT (default: the last listed), STORE_ENCRYPTION_ALLOW_PLAINTEXT=1
Passwords and keys are masked in everything the CLI prints.`;

const EXIT_CODES = `Exit codes:
  0   done (doctor: every configured tier answers; memory only counts as fine)
  1   a configured tier is unreachable (or its client, ioredis or postgres, is not installed),
      or it failed the command
  2   usage error, or configuration that cannot be used (a variable that is not a usable URL,
      a tier the command needs that is not configured)`;

const OPTION = {
  keyPrefix: '  --key-prefix <prefix>  Redis key prefix (default: STORE_KEY_PREFIX, else "tcs")',
  schema: '  --schema <name>        PostgreSQL schema (default: STORE_SCHEMA, else "tcs")',
  timeout: (ms: number, what: string) => `  --timeout <ms>         ${what} (default: ${ms})`,
  json: '  --json                 machine-readable output on stdout',
  help: '  -h, --help             this help',
};

const SUMMARY: Record<Command, string> = {
  doctor: 'report the tiers the environment configures: reachable, versions, migrations, counts',
  migrate: 'apply the PostgreSQL migrations (--print: print their SQL instead)',
  sync: "move the writes pending in Redis's journal to PostgreSQL, once",
  export: 'print everything the store holds for a user as JSON (store.exportUser)',
  inspect: "show a user's threads, pending writes and the tiers holding its data",
  purge: 'delete old messages from PostgreSQL in batches (--keep-last / --max-age-days)',
  'encrypt-existing': 'seal the plaintext PostgreSQL holds from before encryption, in batches (resumable)',
};

const DETAIL: Record<Command, string> = {
  doctor: `Usage: ${BIN} doctor [options]

For each tier the environment configures: its URL (password masked) and the variable it came
from; whether it answers, with the error if not, and the median round trip of 5 pings; the
server version (Redis: standalone or cluster); PostgreSQL's migration state against the versions
this package ships; Redis's pending journal and users with hot copies (SCAN, never KEYS);
PostgreSQL's users, subscribers and dead letters. Changes nothing. Every call has a deadline,
so a hung server is reported, not waited for.

Options:
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS.doctor, 'deadline of every call to a server, in milliseconds')}
${OPTION.json}
${OPTION.help}`,
  migrate: `Usage: ${BIN} migrate [options]

Applies the migrations this package ships to the schema (creating it), under the same advisory
lock a starting store takes, and prints the versions it applied. A store also applies them on
first connect: run this to migrate at deploy time, or with --print to hand the SQL to a DBA.

Options:
${OPTION.schema}
  --print                print the SQL of every migration (for a fresh schema, wrapped in one
                         transaction: ${BIN} migrate --print | psql "$DATABASE_URL");
                         needs no server
${OPTION.timeout(DEFAULT_TIMEOUT_MS.migrate, 'deadline of connecting and of the migration, in milliseconds')}
${OPTION.help}`,
  sync: `Usage: ${BIN} sync [options]

Runs one sync pass, as store.syncNow() does: moves the writes pending in Redis's journal
(write-behind writes, writes held while PostgreSQL was down) to PostgreSQL, and prints what moved.
With a large journal it shows progress: a bar on a terminal, plain lines otherwise. Needs both
Redis and PostgreSQL.

Options:
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS.sync, 'deadline of every call to a server, in milliseconds')}
${OPTION.json}
${OPTION.help}`,
  export: `Usage: ${BIN} export <userId> [options]

Prints, as JSON on stdout, everything the store holds for the user, as store.exportUser()
returns it: phone, booking, subscription and every thread with its title, summary and all of its
messages (dates as ISO strings), the writes still pending in Redis's journal laid over what
PostgreSQL has. Reads whatever the environment configures (Redis, PostgreSQL or both); when a
configured server is unreachable it fails (exit 1) rather than print a partial export.

Options:
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS.export, 'deadline of every call to a server, in milliseconds')}
${OPTION.help}`,
  inspect: `Usage: ${BIN} inspect <userId> [options]

Shows the user's threads (id, message count, last activity, title) with the pending writes laid
over them, whether Redis holds a hot copy of each, how many writes wait in Redis's journal for
the user, and which tiers hold data of the user. Shows no message contents. Changes nothing.

Options:
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS.inspect, 'deadline of every call to a server, in milliseconds')}
${OPTION.json}
${OPTION.help}`,
  purge: `Usage: ${BIN} purge --keep-last <N> | --max-age-days <N> [--dry-run] [options]

Deletes old messages from PostgreSQL in batches and prints, per batch, how many messages it
removed from each thread of each user (never their contents). --keep-last N keeps the newest N
messages of every thread of every user; --max-age-days N removes messages created more than N
days ago; with both, keep-last runs first. Any N works, below historyLimit too. Each batch raises
the cut threads' floors in the same transaction, so a write journaled earlier and replayed later
cannot bring a removed message back. When Redis is configured, the hot copies of the users a
batch touched are dropped after it, so every read agrees with PostgreSQL at once; Redis must be
reachable (it is checked before anything is deleted).

Options:
  --keep-last <N>        keep the newest N messages of each thread
  --max-age-days <N>     remove messages older than N days
  --dry-run              print what would be removed; change nothing (Redis is not needed)
  --batch <N>            most messages per batch (default: 1000)
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS.purge, 'deadline of every call to a server, in milliseconds')}
${OPTION.json}
${OPTION.help}`,
  'encrypt-existing': `Usage: ${BIN} encrypt-existing [--batch <N>] [options]

Encryption at rest, for data written before it was on: seals the plaintext values PostgreSQL
holds (message content and meta, phone, booking, thread titles, summaries) with the keys of
STORE_ENCRYPTION_KEYS, table by table in batches of rows, and prints how many rows it read and
sealed (never their contents). Safe while bots write: a row is rewritten only if it still holds
what the batch read. Interrupted, it resumes where it stopped on the next run. When Redis is
configured, the hot copies of the users a batch touched are dropped after it (they are plaintext).
Run bots with encryption.allowPlaintext until it prints "done", then turn allowPlaintext off.

Options:
  --batch <N>            most rows per batch (default: 1000)
${OPTION.keyPrefix}
${OPTION.schema}
${OPTION.timeout(DEFAULT_TIMEOUT_MS['encrypt-existing'], 'deadline of connecting to a server, in milliseconds')}
${OPTION.json}
${OPTION.help}`,
};

export function mainHelp(): string {
  const commands = COMMANDS.map((c) => `  ${c.padEnd(16)} ${SUMMARY[c]}`).join('\n');
  return `${BIN}: check, migrate, sync, export and purge the stores a bot configures from its environment

Usage: ${BIN} <command> [options]

Commands:
${commands}

Options:
  -h, --help     this help; ${BIN} <command> --help for a command's
  -v, --version  the package's version

${ENVIRONMENT}

${EXIT_CODES}
`;
}

export function commandHelp(command: Command): string {
  return `${DETAIL[command]}

${ENVIRONMENT}

${EXIT_CODES}
`;
}
