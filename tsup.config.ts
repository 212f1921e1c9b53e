import { mkdir, writeFile } from 'node:fs/promises';
import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    grammy: 'src/integrations/grammy.ts',
    telegraf: 'src/integrations/telegraf.ts',
    langchain: 'src/integrations/langchain.ts',
    ai: 'src/integrations/ai.ts',
    otel: 'src/integrations/otel.ts',
    testing: 'src/testing.ts',
    cli: 'src/cli/main.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  // Shared chunks in the CommonJS build too, so every entry sees the same error classes.
  splitting: true,
  sourcemap: true,
  target: 'node20',
  // import.meta.url (used to load optional peers) in the CommonJS build too.
  shims: true,
  external: ['ioredis', 'postgres', 'grammy', 'telegraf', 'ai', '@langchain/core', '@opentelemetry/api', 'vitest'],
  // The migrations as plain SQL, for DBAs who apply schema changes themselves.
  async onSuccess() {
    const { PostgresAdapter } = await import('./src/adapters/postgres.js');
    await mkdir('dist/sql', { recursive: true });
    for (const { file, sql } of PostgresAdapter.migrations()) await writeFile(`dist/sql/${file}`, sql);
  },
});
