/**
 * The JSON body of a request, parsed losslessly (src/json.ts). A body of at most
 * `ONE_GO_MAX_CHARS` is parsed in one go: about 3 ms of the event loop at the parser's speed, and
 * the yielding parser costs about 1.3× the CPU on a 1,000-message body (1.7× on 20,000), its
 * steps being generator steps. A larger body is parsed by parseJsonYielding, which gives the
 * event loop a turn every few milliseconds, so that it does not hold up other requests' database
 * work (their answers from PostgreSQL wait for the event loop) for the whole parse.
 */
import { parseJson, parseJsonYielding } from "../json.js";

/** 512 Ki characters: a 1,000-message Stitch batch is about 150 KiB. @internal exported for test/server-body.test.ts */
export const ONE_GO_MAX_CHARS = 512 * 1024;

/** The parsed body; rejects with the parser's SyntaxError (the same message either way). */
export async function parseBody(text: string): Promise<unknown> {
  if (text.length > ONE_GO_MAX_CHARS) return parseJsonYielding(text);
  return parseJson(text);
}
