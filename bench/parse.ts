/**
 * Lossless JSON parsing of one realistic batch: lossless-json (with seqload's number rules, what
 * parseJson used before) against seqload's own parseJson, and JSON.parse (lossy) for scale.
 *
 *   npm run build && node dist/bench/parse.js [--messages N] [--rounds N] [--blocks N]
 *
 * The batch is a JSON Lines line as `seqload load` reads it: 20,000 messages with 19-digit
 * sequences, six columns (bigint key, text with ~1% escapes and some non-ASCII, integer, number,
 * boolean, date-time).
 */
import { performance } from "node:perf_hooks";
import { parse as losslessParse } from "lossless-json";
import { parseJson, parseNumberToken } from "../src/json.js";
import { benchSchema, streamMessages } from "./lib/data.js";

const args = process.argv.slice(2);
function arg(name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  if (i === -1) return dflt;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer`);
  return n;
}
const MESSAGES = arg("messages", 20_000);
const ROUNDS = arg("rounds", 10);
const BLOCKS = arg("blocks", 7);

const [messages = []] = streamMessages(1, MESSAGES, 1_000_000);
const text = `{"table_name":"customers","key_names":["id"],"schema":${JSON.stringify(benchSchema())},"messages":[${messages
  .map((m) => `{"action":"upsert","sequence":${m.sequence},"data":${JSON.stringify(m.data)}}`)
  .join(",")}]}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const parsers: [string, (t: string) => unknown][] = [
  ["lossless-json parse", (t) => losslessParse(t, undefined, parseNumberToken)],
  ["seqload parseJson", parseJson],
  ["JSON.parse (lossy)", (t) => JSON.parse(t) as unknown],
];
// Each parser parses the batch `ROUNDS` times in a block of its own (so its garbage is collected on
// its own time: lossless-json's many string fragments are part of its cost), blocks taking turns,
// BLOCKS of them; the median block is printed. Wall time and CPU time (the process's, GC threads
// included): on a shared machine the CPU time is the steadier figure.
for (const [, parse] of parsers) for (let i = 0; i < 3; i++) parse(text); // warm-up: optimised code, grown heap
const wall = new Map<string, number[]>(parsers.map(([name]) => [name, []]));
const cpu = new Map<string, number[]>(parsers.map(([name]) => [name, []]));
for (let block = 0; block < BLOCKS; block++) {
  for (const [name, parse] of parsers) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < ROUNDS; i++) parse(text);
    wall.get(name)?.push((performance.now() - t0) / ROUNDS);
    const c = process.cpuUsage(c0);
    cpu.get(name)?.push((c.user + c.system) / 1000 / ROUNDS);
  }
}
console.log(
  `batch: ${MESSAGES.toLocaleString("en-US")} messages with 19-digit sequences, ${(text.length / 2 ** 20).toFixed(2)} MiB of JSON text; median of ${BLOCKS} blocks of ${ROUNDS} parses`,
);
const msgs = (ms: number) => `${Math.round(MESSAGES / (ms / 1000)).toLocaleString("en-US")} msg/s`;
for (const [name] of parsers) {
  const w = median(wall.get(name) ?? []);
  const c = median(cpu.get(name) ?? []);
  console.log(`${name.padEnd(20)} wall ${w.toFixed(1).padStart(6)} ms (${msgs(w)})  cpu ${c.toFixed(1).padStart(6)} ms (${msgs(c)})`);
}
const ratio = (m: Map<string, number[]>) => median(m.get("lossless-json parse") ?? []) / median(m.get("seqload parseJson") ?? []);
console.log(`parseJson vs lossless-json: ${ratio(wall).toFixed(2)}x as fast (wall), ${ratio(cpu).toFixed(2)}x (cpu)`);
