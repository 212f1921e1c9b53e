#!/usr/bin/env node
import { version } from '../../package.json';
import { ConfigurationError, ErrorCode } from '../errors.js';
import { BIN, parseCommandLine, type Command, type Flags } from './args.js';
import { doctor } from './doctor.js';
import { CliError, Exit, UsageError } from './errors.js';
import { commandHelp, mainHelp } from './help.js';
import { migrate } from './migrate.js';
import { Output } from './output.js';
import { purge } from './purge.js';
import { encryptExistingCommand } from './encrypt-existing.js';
import { sync } from './sync.js';
import { exportCommand, inspect } from './user-data.js';

type Env = Record<string, string | undefined>;

const COMMANDS: Record<Command, (flags: Flags, env: Env, output: Output) => Promise<number>> = {
  doctor,
  migrate,
  sync,
  export: exportCommand,
  inspect,
  purge,
  'encrypt-existing': encryptExistingCommand,
};

/** Time for output to drain before exiting anyway when a hung server's socket would keep the process alive. */
const EXIT_GRACE_MS = 200;

async function main(argv: string[], env: Env): Promise<number> {
  const output = new Output(env);
  try {
    const invocation = parseCommandLine(argv, env);
    if (invocation.kind === 'version') output.out(version);
    else if (invocation.kind === 'help') output.out(invocation.command ? commandHelp(invocation.command) : mainHelp());
    else return await COMMANDS[invocation.command](invocation.flags, env, output);
    return Exit.OK;
  } catch (error) {
    return failed(error, output);
  }
}

function failed(error: unknown, output: Output): number {
  if (error instanceof CliError) {
    output.err(`${BIN}: ${error.message}`);
    if (error instanceof UsageError) output.err(`Run "${BIN}${error.command ? ` ${error.command}` : ''} --help" for usage.`);
    return error.exitCode;
  }
  // Configuration the library refuses (a bad URL variable) is a usage error; a client that is not installed, a tier out of reach.
  if (error instanceof ConfigurationError) {
    output.err(`${BIN}: ${output.describe(error)}`);
    return error.code === ErrorCode.MISSING_DEPENDENCY ? Exit.FAILED : Exit.USAGE;
  }
  output.err(`${BIN}: unexpected error: ${output.describe(error)}`);
  return Exit.FAILED;
}

// A reader that went away (`... | head`) is not an error: stop quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : Exit.OK);
  });
}

// No top-level await: the entry builds as CommonJS too.
void main(process.argv.slice(2), process.env).then((code) => {
  process.exitCode = code;
  setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
});
