// The newcomer's path: no --database-url, no DATABASE_URL. The CLI starts an embedded PostgreSQL
// whose data lives in $SEQLOAD_HOME/pgdata and survives between runs. Slow (initdb), so two runs.
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { assertBuilt, EXAMPLES, runCli } from "./fixtures/cli/run.js";

let home: string;

beforeAll(async () => {
  assertBuilt();
  home = await mkdtemp(path.join(os.tmpdir(), "seqload-cli-home-"));
});

afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

it("loads examples/customers.json into the embedded PostgreSQL, then `seqload query` shows the rows", async () => {
  const env = { SEQLOAD_HOME: home };
  const loaded = await runCli(["load", path.join(EXAMPLES, "customers.json")], { env, cwd: home, timeoutMs: 150_000 });
  expect(loaded.stderr).toContain(`using an embedded PostgreSQL with its data in ${path.join(home, "pgdata")}`);
  expect(loaded.code).toBe(0);
  expect(loaded.stdout).toContain("table customers: received 3, inserted 2, updated 0, deleted 0, skipped 0, collapsed 1");
  // Only the one line about the embedded server on stderr, nothing of it on stdout.
  expect(loaded.stderr.trim().split("\n")).toHaveLength(1);
  expect((await stat(path.join(home, "pgdata", "PG_VERSION"))).isFile()).toBe(true);

  // A second process finds the data of the first (the server was stopped in between).
  const shown = await runCli(["query", "select id, name, has_magic, _sequence from customers order by id"], {
    env,
    cwd: home,
    timeoutMs: 150_000,
  });
  expect(shown.code).toBe(0);
  expect(shown.stdout).toBe(
    [
      " id | name | has_magic | _sequence",
      "----+------+-----------+---------------",
      "  1 | Finn | f         | 1574807356000",
      "  2 | Jake | f         | 1574807445000",
      "(2 rows)",
      "",
    ].join("\n"),
  );
}, 300_000);
