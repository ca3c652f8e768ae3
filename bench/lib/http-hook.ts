/**
 * HTTP bench hook: bench/http.ts (another engineer's) exports runHttpBench({connectionString, seconds, batchSize}).
 * It is imported at run time so that the bench builds and runs whether or not it exists.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Context, log } from "./context.js";

interface HttpBenchModule {
  runHttpBench(o: { connectionString: string; seconds: number; batchSize: number }): Promise<unknown>;
}

function isHttpBenchModule(m: unknown): m is HttpBenchModule {
  return typeof m === "object" && m !== null && typeof (m as { runHttpBench?: unknown }).runHttpBench === "function";
}

export async function httpHook(ctx: Context): Promise<unknown> {
  const url = new URL("../http.js", import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    log("http: skipped (bench/http.ts not present yet)");
    return null;
  }
  const mod: unknown = await import(url.href);
  if (!isHttpBenchModule(mod)) {
    log("http: skipped (bench/http.js does not export runHttpBench)");
    return null;
  }
  log("http: runHttpBench");
  return mod.runHttpBench({ connectionString: ctx.connectionString, seconds: ctx.opts.quick ? 5 : 20, batchSize: 1000 });
}
