/** `seqload migrate up|down|status`: seqload's own schema, the same migrations createLoader applies. */
import { migrateDown, migrateUp, migrationStatus } from "../index.js";
import { openDatabase } from "./database.js";
import { CliError, EXIT_OK } from "./errors.js";
import type { Io } from "./io.js";

export interface MigrateFlags {
  databaseUrl?: string;
  all?: boolean;
  json?: boolean;
}

export async function migrateCommand(action: string, flags: MigrateFlags, io: Io): Promise<number> {
  if (flags.all === true && action !== "down") throw new CliError("--all only goes with `migrate down`");
  if (flags.json === true && action !== "status") throw new CliError("--json only goes with `migrate status`");
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err, poolSize: 1 });
  try {
    if (action === "up") {
      const done = await migrateUp(db.pool, io.out);
      if (done.length === 0) io.out("nothing to migrate: the database is up to date");
    } else if (action === "down") {
      const done = await migrateDown(db.pool, { all: flags.all === true }, io.out);
      if (done.length === 0) io.out("nothing to revert: no migration is applied");
    }
    const s = await migrationStatus(db.pool);
    if (flags.json === true) {
      io.out(JSON.stringify({ executed: s.executed, pending: s.pending }));
    } else {
      const list = (names: string[]) => (names.length === 0 ? "none" : names.join(", "));
      io.out(`applied: ${list(s.executed)}`);
      io.out(`pending: ${list(s.pending)}`);
    }
    return EXIT_OK;
  } finally {
    await db.close();
  }
}
