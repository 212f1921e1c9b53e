import { defineConfig } from 'vitest/config';

/*
 * Two layers. `unit`: needs no server and no variable (npm run test:unit). `integration`: needs
 * Redis and PostgreSQL (TEST_REDIS_URL / TEST_DATABASE_URL, or Testcontainers with Docker);
 * its globalSetup checks them. `npm test` runs both. A new test file is integration unless
 * listed here: list it under UNIT only when it touches no server.
 */
const UNIT = [
  'test/ids-and-ops.test.ts',
  'test/validation.test.ts',
  'test/codec-and-options.test.ts',
  'test/adapter-contract-memory.test.ts',
  'test/memory-store.test.ts',
  'test/example-console.test.ts',
  'test/budget.test.ts',
  'test/draft.test.ts',
  'test/tokens-memory.test.ts',
  'test/l1.test.ts',
  'test/encryption-unit.test.ts',
];
const TYPE_TESTS = ['test/**/*.test-d.ts'];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: UNIT,
          globalSetup: ['test/helpers/run-setup.ts'],
          typecheck: { enabled: true, include: TYPE_TESTS, tsconfig: 'test/tsconfig.typecheck.json' },
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: UNIT,
          // run-setup first: its teardown runs last and stops whatever the tests left running.
          globalSetup: ['test/helpers/run-setup.ts', 'test/helpers/global-setup.ts'],
        },
      },
    ],
  },
});
