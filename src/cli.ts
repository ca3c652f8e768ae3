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
import type { SingerFlags } from "./cli/singer.js";
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
  $SEQLOAD_HOME/pgdata when SEQLOAD_HOME is set, and is kept between runs. What the URL
  leaves out comes from PGHOST, PGPORT, PGUSER and PGPASSWORD (postgres:///DB takes the
  host from PGHOST), a missing password from PGPASSFILE or ~/.pgpass, as with psql.`;

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
const onInvalidOption = () =>
  new Option(
    "--on-invalid <mode>",
    "an invalid message: fail rejects its whole batch; quarantine writes it to seqload.rejected and loads the rest (default: fail)",
  ).choices(["fail", "quarantine"]);

const QUARANTINE_HELP = `
Invalid messages:
  --on-invalid fail (default) rejects a batch with any invalid message. With
  --on-invalid quarantine, a message that fails validation (schema, key, sequence, a value
  PostgreSQL cannot store) is written to seqload.rejected, exactly as received, in the
  batch's transaction, and the rest of the batch loads. Problems of the batch as a whole
  (its schema, an unknown field, changed key_names) still reject it whole.`;

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
  $ tap-github --config github.json | seqload singer
  $ seqload status
  $ seqload migrate status --database-url postgres://user:pass@localhost:5432/warehouse

Run "seqload help COMMAND" or "seqload COMMAND --help" for a command's flags and examples.`,
    );

  program
    .command("load")
    .description("Load batches into PostgreSQL, in order, each batch atomically.")
    .argument("[files...]", 'files of batches; "-" or none reads stdin')
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .addOption(onInvalidOption())
    .addOption(distributeOption())
    .option("--json", "print one LoadResult JSON object per loaded batch on stdout, and nothing else")
    .addHelpText(
      "after",
      `${INPUT_HELP}
${DATABASE_HELP}
${QUARANTINE_HELP}

Output:
  One line per batch: table, received, inserted, updated, deleted, skipped, collapsed (and
  rejected, when quarantine set messages aside), time. With --json, one {"table","received",
  "collapsed","inserted","updated","deleted","skipped","rejected"} object per line instead. Diagnostics go to stderr; a progress line appears on a terminal
  for long loads (never with --json or when stderr is not a terminal).
${EXIT_HELP}

Examples:
  $ seqload load examples/customers.json
  $ seqload load day1.jsonl day2.jsonl --database-url postgres://user:pass@db:5432/warehouse
  $ cat batches.jsonl | seqload load - --json --schema staging
  $ DATABASE_URL=postgres://localhost/warehouse seqload load export.json
  $ seqload load export.jsonl --on-invalid quarantine   # then: seqload query "select * from seqload.rejected"`,
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
    .command("singer")
    .description("A Singer target: load a tap's SCHEMA/RECORD/STATE/ACTIVATE_VERSION messages from stdin.")
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .addOption(distributeOption())
    .option("--batch-size <n>", "records per batch and stream at most (default: 20000)")
    .option("--sequence-property <name>", "take each record's sequence from this property (an integer up to int64), not the clock")
    .addOption(onInvalidOption())
    .option(
      "--config <file>",
      "a Singer config file (JSON) with database_url, schema, distribute, batch_size, sequence_property, on_invalid; flags win",
    )
    .addHelpText(
      "after",
      `
Reads one Singer message per line on stdin. Each stream loads into the table of the same
name; key_properties become its primary key (a change is an error); a new SCHEMA for a
stream adds or widens columns; RECORD version and ACTIVATE_VERSION are full-table
replication; a record with a non-null _sdc_deleted_at is a delete (a tombstone).

Sequences: each record gets a 19-digit sequence from seqload's generator (microseconds since
1970, then 000): increasing through the stream, and starting above what the table holds, so a
later run's records win over an earlier run's even if the clock stepped back. With
--sequence-property NAME the record's NAME is its sequence (e.g. a CDC log position); a
record without it is invalid.

Invalid records: by default an invalid RECORD exits 2. With --on-invalid quarantine it is
written to seqload.rejected (as the batch message made from it, the record under "data")
in its batch's transaction, and the stream goes on; a malformed line still exits 2.

Batches: per stream, up to --batch-size records; a STATE, a changed SCHEMA and the end of
input flush. A STATE's value is printed on stdout, one JSON line, once every RECORD before it
is committed; stdout holds nothing else (batch summaries go to stderr). Numbers are read
exactly (19-digit integers, long decimals).

Exit codes:
  0  everything loaded
  2  a malformed line or an invalid message (its line is named); nothing from that line on
     is loaded and no later STATE printed; batches committed before stay committed
  1  any other failure (e.g. the database), with the same promise for STATE
${DATABASE_HELP}

Examples:
  $ tap-github --config github.json | seqload singer --database-url postgres://localhost/warehouse
  $ tap-postgres --config cdc.json | seqload singer --schema cdc --sequence-property _sdc_lsn
  $ tap-foo | seqload singer --batch-size 5000 > state.json    # last line: the next bookmark

Meltano: a custom loader in meltano.yml. Meltano runs the executable with --config FILE,
so point it at a two-line script, target-seqload:  #!/bin/sh  exec seqload singer "$@"
  plugins:
    loaders:
      - name: target-seqload
        namespace: target_seqload
        executable: ./target-seqload
        settings:
          - name: database_url
            sensitive: true
          - name: schema
          - name: batch_size
            kind: integer
          - name: sequence_property
        config:
          database_url: $DATABASE_URL
          schema: raw
  $ meltano run tap-github target-seqload`,
    )
    .action(async (flags: SingerFlags) => {
      const { singerCommand } = await import("./cli/singer.js");
      process.exitCode = await singerCommand(flags, io);
    });

  program
    .command("status")
    .description("Show the tables seqload manages: rows, live and deleted rows, highest sequence, last load.")
    .argument("[table]", "only this table")
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .option("--json", "print one JSON object per table (max_sequence with every digit)")
    .addHelpText(
      "after",
      `
Columns: table, key (primary key columns, or "(append-only)"), rows (tombstones included),
live, deleted (tombstones), max_sequence (the highest sequence committed, from the load log
seqload.loads), batches (committed), last_loaded_at. Row counts are exact: each table is
counted. Reads only; exit 1 when TABLE was never loaded into the schema.
${DATABASE_HELP}

Examples:
  $ seqload status
  $ seqload status customers --schema staging
  $ seqload status --json --database-url postgres://user:pass@localhost:5432/warehouse`,
    )
    .action(async (table: string | undefined, flags: { databaseUrl?: string; schema?: string; json?: boolean }) => {
      const { statusCommand } = await import("./cli/status.js");
      process.exitCode = await statusCommand(table, flags, io);
    });

  program
    .command("sequence")
    .description("Print one sequence value: 19 digits, strictly increasing, time-based (for shell scripts).")
    .option("--source <n>", "0-999, the value's last three digits: give concurrent writers different sources", "0")
    .addHelpText(
      "after",
      `
Layout: 16 digits of microseconds since 1970-01-01 UTC, then the source in 3 digits
(1795465705836066042 = 2026-11-23T20:28:25.836066Z, source 42), the same generator as the
library's createSequencer(). Two runs a microsecond apart or more print increasing values as
long as the system clock does not step back between them. Needs no database.

Examples:
  $ seqload sequence
  $ seq=$(seqload sequence --source 7)`,
    )
    .action(async (flags: { source?: string }) => {
      const { sequenceCommand } = await import("./cli/sequence.js");
      process.exitCode = sequenceCommand(flags, io);
    });

  program
    .command("serve")
    .description("Serve Stitch's Import API (POST /v2/import/batch, /v2/import/validate, GET /v2/import/status).")
    .option("--port <n>", "port to listen on; 0 picks a free one", DEFAULT_PORT)
    .option("--host <host>", "address to listen on; 0.0.0.0 for all", DEFAULT_HOST)
    .addOption(databaseUrlOption())
    .addOption(schemaOption("schema of the data tables (default: public)"))
    .addOption(onInvalidOption())
    .addOption(distributeOption())
    .option("--token <token>", "accept this bearer token (repeatable; also SEQLOAD_TOKENS=a,b)", (t: string, all: string[] = []) => [
      ...all,
      t,
    ])
    .option("--tokens-file <file>", "read tokens from this file (mode 600; one entry per line; reread on SIGHUP and on change)")
    .option("--max-schemas-cached <n>", "per-schema loaders kept, least recently used evicted first (default: 256)")
    .option("--insecure-no-auth", "accept requests without a token (only when no token is configured)")
    .option("--max-in-flight <n>", "batches loading at once; beyond it 503 (default: the pool size, 10)")
    .option(
      "--max-in-flight-per-token <n>",
      "batches loading at once per token; beyond it 429 (default: half of --max-in-flight with several tokens)",
    )
    .option("--max-memory-mb <n>", "memory budget for bodies being read and batches being loaded; beyond it 503", "512")
    .option("--headers-timeout <s>", "seconds for a request's headers to arrive", "10")
    .option("--body-timeout <s>", "seconds for a request's whole body to arrive; beyond it 408", "30")
    .option("--keep-alive-timeout <s>", "seconds an idle keep-alive connection stays open", "72")
    .option("--shutdown-grace <s>", "seconds a shutdown waits for requests in flight before closing their connections", "30")
    .option("--tls-cert <file>", "serve HTTPS with this PEM certificate (chain); needs --tls-key")
    .option("--tls-key <file>", "the PEM private key for --tls-cert")
    .addHelpText(
      "after",
      `
Clients authenticate with "Authorization: Bearer TOKEN". An entry is TOKEN, TOKEN@SCHEMA
(loads into that schema instead of --schema), or sha256:HEX[@SCHEMA] (the token's SHA-256;
"seqload token new" prints one). The tokens file holds one entry per line (# comments) and
must not be readable by group or others (chmod 600). SIGHUP, or a change to the file,
rereads it: new tokens work at once, removed ones get 401, a bad file is refused and the
old set stays. --token is visible to other local users (ps): use it for trials only.
Without any token serve refuses to start unless --insecure-no-auth is given.
With --on-invalid quarantine a batch with invalid messages is answered 201: its valid
messages load, the invalid ones go to seqload.rejected, and the batch's log line counts them
("rejected"). POST /v2/import/validate still reports every invalid message.
${DATABASE_HELP}

Examples:
  $ seqload token new --schema acme        # prints the token and its sha256: line
  $ seqload serve --tokens-file /etc/seqload/tokens --database-url postgres://loader@db/warehouse
  $ SEQLOAD_TOKENS=tok1,tok2 seqload serve --host 0.0.0.0 --port 8080
  $ kill -HUP <pid>                        # reread the tokens file
  $ seqload serve --insecure-no-auth     # local trials only`,
    )
    .action(async (flags: ServeFlags) => {
      const { serveCommand } = await import("./cli/serve.js");
      process.exitCode = await serveCommand(flags, io);
    });

  program
    .command("token")
    .description("Make a token for serve --tokens-file (new), or hash one read from stdin (hash).")
    .addArgument(
      new Argument("<action>", "new: a random token and its entry; hash: the entry of a token read from stdin").choices(["new", "hash"]),
    )
    .addOption(schemaOption("bind the token to this schema (the entry ends with @SCHEMA)"))
    .addHelpText(
      "after",
      `
"new" prints two lines on stdout: the token (for the client) and its sha256:HEX[@SCHEMA]
entry (for the tokens file). "hash" reads one token from stdin and prints its entry.

Examples:
  $ seqload token new --schema acme   # line 1 to the client, line 2 into the tokens file
  $ printf %s "$TOKEN" | seqload token hash --schema acme`,
    )
    .action(async (action: string, flags: { schema?: string }) => {
      const { tokenCommand } = await import("./cli/token.js");
      process.exitCode = await tokenCommand(action, flags, io, process.stdin);
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
