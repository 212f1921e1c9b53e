import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export const BIN = 'tiered-conversation-store';
export const COMMANDS = ['doctor', 'migrate', 'sync', 'export', 'inspect', 'purge', 'encrypt-existing'] as const;
export type Command = (typeof COMMANDS)[number];

/** Migrating a big table may take a while; the other commands make short calls. */
export const DEFAULT_TIMEOUT_MS: Record<Command, number> = {
  doctor: 2000,
  migrate: 30_000,
  sync: 2000,
  export: 5000,
  inspect: 2000,
  purge: 30_000,
  'encrypt-existing': 30_000,
};
/** Messages per purge batch unless --batch says otherwise. */
export const DEFAULT_PURGE_BATCH = 1000;

export interface Flags {
  keyPrefix: string;
  schema: string;
  timeoutMs: number;
  json: boolean;
  print: boolean;
  /** export, inspect: the user id. */
  user?: string;
  /** purge: the rule (one or both), the batch size, and whether to change nothing. */
  keepLast?: number;
  maxAgeDays?: number;
  batch: number;
  dryRun: boolean;
}

export type Invocation = { kind: 'help'; command?: Command } | { kind: 'version' } | { kind: 'run'; command: Command; flags: Flags };

type Env = Record<string, string | undefined>;
type OptionName = 'key-prefix' | 'schema' | 'timeout' | 'json' | 'print' | 'help' | 'keep-last' | 'max-age-days' | 'batch' | 'dry-run';

const OPTIONS = {
  'key-prefix': { type: 'string' },
  schema: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  print: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  'keep-last': { type: 'string' },
  'max-age-days': { type: 'string' },
  batch: { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

const ACCEPTS: Record<Command, readonly OptionName[]> = {
  doctor: ['key-prefix', 'schema', 'timeout', 'json', 'help'],
  migrate: ['schema', 'print', 'timeout', 'help'],
  sync: ['key-prefix', 'schema', 'timeout', 'json', 'help'],
  export: ['key-prefix', 'schema', 'timeout', 'help'],
  inspect: ['key-prefix', 'schema', 'timeout', 'json', 'help'],
  purge: ['keep-last', 'max-age-days', 'dry-run', 'batch', 'key-prefix', 'schema', 'timeout', 'json', 'help'],
  'encrypt-existing': ['batch', 'key-prefix', 'schema', 'timeout', 'json', 'help'],
};

/** Commands that take one argument: the user id. */
const TAKES_USER: readonly Command[] = ['export', 'inspect'];

// The adapters check these too; checked here as well so a typo is a usage error before any connection.
const KEY_PREFIX = /^[A-Za-z0-9_:.-]{1,64}$/;
const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

/** What the command line asks for; throws UsageError with a helpful message. */
export function parseCommandLine(argv: readonly string[], env: Env): Invocation {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError(`missing command: one of ${COMMANDS.join(', ')}`);
  if (first === '-h' || first === '--help') return { kind: 'help' };
  if (first === '-v' || first === '--version') return { kind: 'version' };
  if (first === 'help') return helpFor(rest[0]);
  if (first.startsWith('-')) throw new UsageError(`unknown option ${first} (a command comes first: one of ${COMMANDS.join(', ')})`);
  const command = asCommand(first);
  const { values, positionals } = parseOptions(command, rest);
  if (values.help) return { kind: 'help', command };
  try {
    const flags = toFlags(command, values, env);
    if (TAKES_USER.includes(command)) flags.user = userArgument(positionals);
    return { kind: 'run', command, flags };
  } catch (error) {
    throw error instanceof UsageError ? new UsageError(`${command}: ${error.message}`, command) : error;
  }
}

function helpFor(name: string | undefined): Invocation {
  return name === undefined ? { kind: 'help' } : { kind: 'help', command: asCommand(name) };
}

function asCommand(name: string): Command {
  const command = COMMANDS.find((c) => c === name);
  if (command) return command;
  const near = COMMANDS.find((c) => distance(c, name) <= 2);
  throw new UsageError(`unknown command "${name}"${near ? ` (did you mean "${near}"?)` : ''}: the commands are ${COMMANDS.join(', ')}`);
}

type Values = Partial<Record<OptionName, string | boolean>>;

function parseOptions(command: Command, args: string[]): { values: Values; positionals: string[] } {
  const accepted = ACCEPTS[command];
  const options = Object.fromEntries(accepted.map((name) => [name, OPTIONS[name]]));
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: TAKES_USER.includes(command) });
    return { values: parsed.values as Values, positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError(`${command}: ${describeParseError(error, accepted)}`, command);
  }
}

/** parseArgs's messages are long and generic; say what is wrong and what would be right. */
function describeParseError(error: unknown, accepted: readonly OptionName[]): string {
  const { code, message } = error as { code?: string; message: string };
  const valid = `its options are ${accepted.map((o) => `--${o}`).join(', ')}`;
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${option ?? ''}; ${valid}`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')
    return `${option ?? 'an option'} ${message.includes('argument missing') ? 'needs a value' : 'takes no value'}`;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}; ${valid}`;
  return message;
}

function toFlags(command: Command, values: Values, env: Env): Flags {
  const keyPrefix = text(values['key-prefix']) ?? fromEnv(env, 'STORE_KEY_PREFIX') ?? 'tcs';
  const schema = text(values.schema) ?? fromEnv(env, 'STORE_SCHEMA') ?? 'tcs';
  if (!KEY_PREFIX.test(keyPrefix)) throw new UsageError(`key prefix must be 1-64 characters of [A-Za-z0-9_:.-], got ${JSON.stringify(keyPrefix)}`);
  if (!SCHEMA.test(schema)) throw new UsageError(`schema must be a lowercase identifier of 1-63 characters [a-z0-9_], got ${JSON.stringify(schema)}`);
  return {
    keyPrefix,
    schema,
    timeoutMs: timeout(text(values.timeout), DEFAULT_TIMEOUT_MS[command]),
    json: values.json === true,
    print: values.print === true,
    ...(command === 'purge' ? purgeRule(values) : {}),
    batch: whole(text(values.batch), '--batch', 1, 100_000) ?? DEFAULT_PURGE_BATCH,
    dryRun: values['dry-run'] === true,
  };
}

function purgeRule(values: Values): { keepLast?: number; maxAgeDays?: number } {
  const keepLast = whole(text(values['keep-last']), '--keep-last', 0, 1_000_000_000);
  const maxAgeDays = whole(text(values['max-age-days']), '--max-age-days', 0, 1_000_000);
  if (keepLast === undefined && maxAgeDays === undefined) throw new UsageError('say what to remove: --max-age-days <days> and/or --keep-last <messages>');
  return { ...(keepLast === undefined ? {} : { keepLast }), ...(maxAgeDays === undefined ? {} : { maxAgeDays }) };
}

/** A whole number from `min` to `max`, or undefined when the option is absent. */
function whole(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (/^\d+$/.test(value) && n >= min && n <= max) return n;
  throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
}

function userArgument(positionals: readonly string[]): string {
  if (positionals.length === 0) throw new UsageError('missing the user id');
  if (positionals.length > 1) throw new UsageError(`one user id, got ${positionals.length} arguments`);
  return positionals[0] as string;
}

function timeout(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = Number(value);
  if (/^\d+$/.test(value) && ms >= 1 && ms <= 600_000) return ms;
  throw new UsageError(`--timeout must be a whole number of milliseconds from 1 to 600000, got ${JSON.stringify(value)}`);
}

function text(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function fromEnv(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1, (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] ?? 0;
}
