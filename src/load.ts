import { createRequire } from 'node:module';
import { ConfigurationError, ErrorCode } from './errors.js';

const require = createRequire(import.meta.url);

/** Loads an optional peer dependency when an adapter needs it, with an error that says what to install. */
export function loadPeer<T>(name: 'ioredis' | 'postgres', adapter: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new ConfigurationError(ErrorCode.MISSING_DEPENDENCY, `${adapter} needs the "${name}" package, which is not installed: run npm install ${name}`, {
      cause: error,
    });
  }
}
