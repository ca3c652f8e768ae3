/** `seqload status [TABLE]`: the tables seqload manages, with row counts, highest sequence and last load. */
import { type TableStatus, tableStatus } from "../lookups.js";
import { openDatabase } from "./database.js";
import { CliError, EXIT_OK } from "./errors.js";
import { type Column, formatTable } from "./format.js";
import type { Io } from "./io.js";

export interface StatusFlags {
  databaseUrl?: string;
  schema?: string;
  json?: boolean;
}

// pg_type OIDs, for formatTable's alignment: text, int8, timestamptz.
const TEXT = 25;
const INT8 = 20;
const TIMESTAMPTZ = 1184;

const COLUMNS: Column[] = [
  { name: "table", typeOid: TEXT },
  { name: "key", typeOid: TEXT },
  { name: "rows", typeOid: INT8 },
  { name: "live", typeOid: INT8 },
  { name: "deleted", typeOid: INT8 },
  { name: "max_sequence", typeOid: INT8 },
  { name: "batches", typeOid: INT8 },
  { name: "last_loaded_at", typeOid: TIMESTAMPTZ },
];

/** One table as a JSON object: the 19-digit max_sequence as a bare JSON number with every digit. */
function asJson(s: TableStatus): string {
  const fields = [
    `"table":${JSON.stringify(s.table)}`,
    `"key_names":${JSON.stringify(s.keyNames)}`,
    `"rows":${s.rows}`,
    `"live":${s.live}`,
    `"deleted":${s.deleted}`,
    `"max_sequence":${s.maxSequence === null ? "null" : s.maxSequence.toString()}`,
    `"batches":${s.batches}`,
    `"last_loaded_at":${s.lastLoadedAt === null ? "null" : JSON.stringify(s.lastLoadedAt.toISOString())}`,
  ];
  return `{${fields.join(",")}}`;
}

export async function statusCommand(table: string | undefined, flags: StatusFlags, io: Io): Promise<number> {
  const schema = flags.schema ?? "public";
  const db = await openDatabase({ databaseUrl: flags.databaseUrl, log: io.err, poolSize: 1 });
  try {
    const tables = await tableStatus(db.pool, schema, table);
    if (table !== undefined && tables.length === 0) {
      throw new CliError(
        `table ${JSON.stringify(table)} in schema ${JSON.stringify(schema)}: seqload has loaded no such table (check the name and --schema)`,
      );
    }
    if (flags.json === true) {
      for (const s of tables) io.out(asJson(s));
    } else {
      const rows = tables.map((s) => [
        s.table,
        s.keyNames.length === 0 ? "(append-only)" : s.keyNames.join(", "),
        String(s.rows),
        String(s.live),
        String(s.deleted),
        s.maxSequence?.toString() ?? null,
        String(s.batches),
        s.lastLoadedAt?.toISOString() ?? null,
      ]);
      for (const line of formatTable(COLUMNS, rows)) io.out(line);
    }
    return EXIT_OK;
  } finally {
    await db.close();
  }
}
