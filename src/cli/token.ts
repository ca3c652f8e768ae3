/**
 * `seqload token new|hash`: tokens for `seqload serve --tokens-file`. `new` makes a random token;
 * `hash` turns a token read from stdin (never from the argument list, which other local users can
 * read) into its entry. Both print the `sha256:HEX[@schema]` line, so the file need not hold the
 * token itself.
 */
import { text } from "node:stream/consumers";
import { hashedEntry, newToken } from "../server/auth.js";
import { CliError, EXIT_OK } from "./errors.js";
import type { Io } from "./io.js";

export interface TokenFlags {
  schema?: string;
}

function checked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

export async function tokenCommand(action: string, flags: TokenFlags, io: Io, stdin: NodeJS.ReadableStream): Promise<number> {
  if (action === "new") {
    const { token, entry } = checked(() => newToken(flags.schema));
    io.out(token);
    io.out(entry);
    io.err("seqload: line 1 is the token (give it to the client: Authorization: Bearer TOKEN; it is not stored anywhere),");
    io.err("seqload: line 2 the entry for the --tokens-file (it holds the token's SHA-256, not the token)");
    return EXIT_OK;
  }
  if ((stdin as { isTTY?: boolean }).isTTY === true) io.err("seqload: type or paste the token, then Enter and Ctrl-D");
  const token = (await text(stdin)).trim();
  if (token === "") throw new CliError("token hash reads the token from stdin and got nothing");
  if (/\s/.test(token)) throw new CliError("token hash reads ONE token from stdin; what it got contains whitespace");
  const entry = checked(() => {
    newToken(flags.schema); // checks the schema name the same way
    return hashedEntry(token, flags.schema);
  });
  io.out(entry);
  return EXIT_OK;
}
