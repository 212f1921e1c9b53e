/** Exit codes of the CLI, documented in its help and the README. */
export const Exit = {
  OK: 0,
  /** A configured tier is unreachable (or its client is not installed), or failed the command. */
  FAILED: 1,
  /** Usage error, or configuration that cannot be used. */
  USAGE: 2,
} as const;

/** An error the CLI reports as one line on stderr, then exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A command line the CLI cannot run: the message says why, and where the help is. */
export class UsageError extends CliError {
  constructor(
    message: string,
    /** The command whose help explains the right usage, if the error is about one. */
    readonly command?: string,
  ) {
    super(Exit.USAGE, message);
    this.name = 'UsageError';
  }
}
