#!/usr/bin/env node
/**
 * The `seqload` command: flags in, exported library functions called, exit code out.
 *   0  everything loaded (or valid)
 *   2  invalid input: malformed JSON, an invalid batch, key_names that conflict with the table
 *   1  any other failure (connection, database, usage)
 * The commands live in src/cli/*.ts; this file only declares them and their help.
 */
import { readFileSync } from "node:fs";
import { Argument, Command, CommanderError, Option } from "commander";
import { describeError, EXIT_FAILURE, EXIT_OK } from "./cli/errors.js";
import type { LoadFlags } from "./cli/load.js";
import type { ServeFlags } from "./cli/serve.js";
import { flushOutput, processIo } from "./cli/io.js";

// Each command's module is imported when it runs, so --help and validate start fast and
// validate never loads the database driver.
const io = processIo;
const DEFAULT_PORT = "8080";
const DEFAULT_HOST = "127.0.0.1";

function packageVersion(): string {
  // dist/src/cli.js when built, src/cli.ts under tsx: the package.json is two or one levels up.
  for (const rel of ["../../package.json", "../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "seqload" && pkg.version !== undefined) return pkg.version;
    } catch {
      // try the next place
    }
  }
  return "unknown";
}

const DATABASE_HELP = `
Database:
  --database-url URL, else the DATABASE_URL environment variable, else an embedded
  PostgreSQL (nothing to install) whose data lives in ./.seqload/pgdata, or in
  $SEQLOAD_HOME/pgdata when SEQLOAD_HOME is set, and is kept between runs.`;

const INPUT_HELP = `
Input:
  Each FILE holds one batch object (the body of Stitch's POST /v2/import/batch), a JSON
  array of batch objects, or JSON Lines (one batch object per line). "-" or no FILE reads
  stdin. Numbers are read exactly: a 19-digit sequence stays 19 digits.`;

const EXIT_HELP = `
Exit codes:
  0  all batches loaded
  2  invalid input: malformed JSON or an invalid batch (it wrote nothing; the batches
     before it stay loaded and are reported, the ones after it are not loaded)
  1  any other failure (e.g. the database cannot be reached)`;

const databaseUrlOption = () => new Option("--database-url <url>", "PostgreSQL URL (default: DATABASE_URL, else the embedded PostgreSQL)");
const schemaOption = (what: string) => new Option("--schema <name>", what);
const distributeOption = () =>
  new Option(
    "--distribute <mode>",
    "on a Citus coordinator: auto distributes new tables (keyed: on the first key), off keeps them local",
  ).choices(["auto", "off"]);

function buildProgram(): Command {
  const program = new Command()
    .name("seqload")
    .description("Load Stitch Import API batches into PostgreSQL so that only the newest version of each record survives.")
    .version(packageVersion(), "-V, --version")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`seqload: ${text.replace(/^error: /, "")}`) })
    .addHelpText(
      "after",
      `${DATABASE_HELP}

Examples:
  $ seqload load examples/customers.json
  $ seqload query "select * from customers order by id"
  $ seqload validate batches.jsonl
  $ seqload migrate status --database-url postgres://user:pass@localhost:5432/warehouse

Run "seqload help COMMAND" or "seqload COMMAND --help" for a command's flags and examples.`,
    );

  program
    .command("load")
    .description("Load batches into PostgreSQL, in order, each batch atomically.")
    .argument("[files...]", 'files of batches; "-" or none reads stdin')
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .addOption(distributeOption())
    .option("--json", "print one LoadResult JSON object per loaded batch on stdout, and nothing else")
    .addHelpText(
      "after",
      `${INPUT_HELP}
${DATABASE_HELP}

Output:
  One line per batch: table, received, inserted, updated, deleted, skipped, collapsed, time.
  With --json, one {"table","received","collapsed","inserted","updated","deleted","skipped"}
  object per line instead. Diagnostics go to stderr; a progress line appears on a terminal
  for long loads (never with --json or when stderr is not a terminal).
${EXIT_HELP}

Examples:
  $ seqload load examples/customers.json
  $ seqload load day1.jsonl day2.jsonl --database-url postgres://user:pass@db:5432/warehouse
  $ cat batches.jsonl | seqload load - --json --schema staging
  $ DATABASE_URL=postgres://localhost/warehouse seqload load export.json`,
    )
    .action(async (files: string[], flags: LoadFlags) => {
      const { loadCommand } = await import("./cli/load.js");
      process.exitCode = await loadCommand(files, flags, io);
    });

  program
    .command("validate")
    .description("Check batches as load would, without a database: schema, keys, sequences, values.")
    .argument("[files...]", 'files of batches; "-" or none reads stdin')
    .addHelpText(
      "after",
      `${INPUT_HELP}

Every invalid batch is reported with each problem's message index and JSON path.
Exit codes: 0 all valid, 2 some batch is invalid or some input is malformed JSON.

Examples:
  $ seqload validate examples/customers.json
  $ seqload validate batches.jsonl more.json
  $ some-exporter | seqload validate -`,
    )
    .action(async (files: string[]) => {
      const { validateCommand } = await import("./cli/validate.js");
      process.exitCode = await validateCommand(files, io);
    });

  program
    .command("migrate")
    .description('Apply, revert or list seqload\'s own migrations (schema "seqload").')
    .addArgument(new Argument("<action>", "up: apply pending; down: revert the last; status: list").choices(["up", "down", "status"]))
    .addOption(databaseUrlOption())
    .option("--all", "with down: revert every migration")
    .option("--json", 'with status: print {"executed":[…],"pending":[…]}')
    .addHelpText(
      "after",
      `
"load" and the library apply pending migrations by themselves; this command is for operators
who migrate ahead of time or need to undo seqload's bookkeeping. Data tables are never dropped.
${DATABASE_HELP}

Examples:
  $ seqload migrate status
  $ seqload migrate up --database-url postgres://user:pass@localhost:5432/warehouse
  $ seqload migrate down --all`,
    )
    .action(async (action: string, flags: { databaseUrl?: string; all?: boolean; json?: boolean }) => {
      const { migrateCommand } = await import("./cli/migrate.js");
      process.exitCode = await migrateCommand(action, flags, io);
    });

  program
    .command("query")
    .description("Run SQL and print the result as a table (no psql needed).")
    .argument("<sql>", "the SQL to run (several statements: each result is printed)")
    .addOption(databaseUrlOption())
    .addOption(schemaOption("look up unqualified table names in this schema first (search_path)"))
    .option("--json", "print one JSON object per row (numbers keep every digit)")
    .addHelpText(
      "after",
      `
Values are printed as PostgreSQL writes them (exact bigint and numeric digits, timestamps
with microseconds); NULL is an empty cell. Each load is also recorded in seqload.loads.
${DATABASE_HELP}

Examples:
  $ seqload query "select * from customers order by id"
  $ seqload query "select id, name, _sequence, _deleted_at from customers" --json
  $ seqload query "select table_name, received, inserted, loaded_at from seqload.loads"`,
    )
    .action(async (sql: string, flags: { databaseUrl?: string; schema?: string; json?: boolean }) => {
      const { queryCommand } = await import("./cli/query.js");
      process.exitCode = await queryCommand(sql, flags, io);
    });

  program
    .command("serve")
    .description("Serve Stitch's Import API (POST /v2/import/batch, /v2/import/validate, GET /v2/import/status).")
    .option("--port <n>", "port to listen on; 0 picks a free one", DEFAULT_PORT)
    .option("--host <host>", "address to listen on; 0.0.0.0 for all", DEFAULT_HOST)
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .addOption(distributeOption())
    .option("--token <token>", "accept this bearer token (repeatable; also SEQLOAD_TOKENS=a,b)", (t: string, all: string[] = []) => [
      ...all,
      t,
    ])
    .option("--insecure-no-auth", "accept requests without a token (only when no token is configured)")
    .addHelpText(
      "after",
      `
Clients authenticate with "Authorization: Bearer TOKEN". A token given as TOKEN@SCHEMA
loads into that schema instead of --schema. Without any token (no --token, no
SEQLOAD_TOKENS) serve refuses to start unless --insecure-no-auth is given.
${DATABASE_HELP}

Examples:
  $ seqload serve --token "$(openssl rand -hex 24)"
  $ SEQLOAD_TOKENS=tok1,tok2 seqload serve --host 0.0.0.0 --port 8080 --database-url postgres://localhost/warehouse
  $ seqload serve --insecure-no-auth     # local trials only`,
    )
    .action(async (flags: ServeFlags) => {
      const { serveCommand } = await import("./cli/serve.js");
      process.exitCode = await serveCommand(flags, io);
    });

  return program;
}

async function main(argv: string[]): Promise<number> {
  // `seqload query … | head`: a closed pipe is the reader's choice, not a failure.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : EXIT_OK);
  });
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and --version "fail" with exit code 0; usage errors were already printed.
      return e.exitCode === 0 ? EXIT_OK : EXIT_FAILURE;
    }
    const { message, exitCode } = describeError(e);
    io.err(`seqload: ${message}`);
    return exitCode;
  }
}

const code = await main(process.argv);
await flushOutput();
// Exit explicitly: a stray handle (a pool, a timer in a dependency) must not keep the CLI alive.
process.exit(code);
