import type { Logger } from './types.js';

const PREFIX = '[tiered-conversation-store]';
const noop = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** A logger with `child(bindings)`: pino's own child loggers when given pino, else the same logger. */
export interface StoreLogger extends Logger {
  child(bindings: Record<string, string>): StoreLogger;
}

type ChildCapable = Logger & { child?: (bindings: Record<string, string>) => Logger };

/**
 * The store's logger: every line goes through the secrets mask. `undefined` means console without
 * debug lines; `false` means silence; anything else with debug/info/warn/error is used as given
 * (pino directly: the tiers log through `logger.child({ tier })`).
 */
export function createLogger(logger: Logger | false | undefined, secrets: Secrets): StoreLogger {
  if (logger === false) return wrapLogger(silentLogger, secrets);
  return wrapLogger(
    logger ?? {
      debug: noop,
      info: (m: string) => console.info(`${PREFIX} ${m}`),
      warn: (m: string) => console.warn(`${PREFIX} ${m}`),
      error: (m: string) => console.error(`${PREFIX} ${m}`),
    },
    secrets,
  );
}

function wrapLogger(target: ChildCapable, secrets: Secrets): StoreLogger {
  const wrap =
    (level: keyof Logger) =>
    (message: string, ...rest: unknown[]) =>
      target[level](secrets.mask(message), ...rest.map((r) => secrets.maskValue(r)));
  return {
    debug: wrap('debug'),
    info: wrap('info'),
    warn: wrap('warn'),
    error: wrap('error'),
    child: (bindings) => (typeof target.child === 'function' ? wrapLogger(target.child(bindings), secrets) : wrapLogger(target, secrets)),
  };
}

const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@/?#\s]+)@/gi;

/** Masks passwords: in any URL, and every password the store was configured with, wherever it appears. */
export class Secrets {
  readonly #known = new Set<string>();

  /** Remembers the password of a connection URL (or a bare password) so it is masked everywhere. */
  add(urlOrPassword: string | undefined): void {
    if (!urlOrPassword) return;
    let password = urlOrPassword;
    try {
      const parsed = new URL(urlOrPassword);
      if (!parsed.password) return;
      password = decodeURIComponent(parsed.password);
      this.#known.add(parsed.password);
    } catch {
      // not a URL: a bare password
    }
    if (password.length >= 3) this.#known.add(password);
  }

  mask(text: string): string {
    let out = text.replace(URL_PASSWORD, '$1***@');
    for (const secret of this.#known) if (out.includes(secret)) out = out.split(secret).join('***');
    return out;
  }

  /** A copy of an error (message, stack and string fields masked, cause chain too); other values as they are. */
  maskValue<T>(value: T): T {
    return value instanceof Error ? (this.maskError(value) as T) : value;
  }

  maskError(error: Error, depth = 0): Error {
    const copy = new Error(this.mask(error.message));
    copy.name = error.name;
    if (error.stack !== undefined) copy.stack = this.mask(error.stack);
    for (const [key, value] of Object.entries(error)) {
      // Objects (options, parameters) may hold secrets or user data: only plain fields are kept.
      if (typeof value === 'string') (copy as unknown as Record<string, unknown>)[key] = this.mask(value);
      else if (typeof value === 'number' || typeof value === 'boolean') (copy as unknown as Record<string, unknown>)[key] = value;
    }
    if (error.cause instanceof Error && depth < 5) copy.cause = this.maskError(error.cause, depth + 1);
    return copy;
  }
}

/** A URL fit for logs: password masked. */
export function maskUrl(url: string): string {
  return url.replace(URL_PASSWORD, '$1***@');
}
