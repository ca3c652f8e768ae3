// SingerBatcher (src/singer.ts) without a database: how a Singer stream becomes batches and STATEs.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createSequencer } from "../src/index.js";
import { SingerBatcher, SingerInputError, type SingerStep } from "../src/singer.js";

const schema = (stream: string, extra: Record<string, unknown> = {}) => ({
  type: "SCHEMA",
  stream,
  schema: { type: "object", properties: { id: { type: "integer" }, ...extra } },
  key_properties: ["id"],
});

type Event =
  { kind: "record"; stream: number; version: number | null } | { kind: "state" } | { kind: "activate"; stream: number; version: number };

const events = fc.array(
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("record" as const),
        stream: fc.integer({ min: 0, max: 2 }),
        version: fc.option(fc.integer({ min: 1, max: 3 })),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("state" as const) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("activate" as const),
        stream: fc.integer({ min: 0, max: 2 }),
        version: fc.integer({ min: 1, max: 3 }),
      }),
    },
  ),
  { maxLength: 200 },
) as fc.Arbitrary<Event[]>;

describe("SingerBatcher", () => {
  it("hands out every record once, in order per stream, in batches of at most batchSize sharing one version; a STATE only after every earlier record", () => {
    fc.assert(
      fc.property(events, fc.integer({ min: 1, max: 7 }), (input, batchSize) => {
        let clock = 1_795_465_705_836_066n;
        const batcher = new SingerBatcher({ batchSize, sequencer: () => createSequencer({ now: () => clock++ }) });
        const steps: SingerStep[] = [];
        const lineOf: number[][] = [[], [], []]; // lines of each stream's messages, in input order
        let line = 0;
        for (let s = 0; s < 3; s++) steps.push(...batcher.push(schema(`s${s}`), ++line));
        const stateLines: number[] = [];
        const versionOf = new Map<number, number | null>(); // line → the message's version
        for (const e of input) {
          line++;
          if (e.kind === "state") {
            stateLines.push(line);
            steps.push(...batcher.push({ type: "STATE", value: { line } }, line));
          } else if (e.kind === "activate") {
            lineOf[e.stream]?.push(line);
            versionOf.set(line, e.version);
            steps.push(...batcher.push({ type: "ACTIVATE_VERSION", stream: `s${e.stream}`, version: e.version }, line));
          } else {
            lineOf[e.stream]?.push(line);
            versionOf.set(line, e.version);
            const m = {
              type: "RECORD",
              stream: `s${e.stream}`,
              record: { id: line },
              ...(e.version === null ? {} : { version: e.version }),
            };
            steps.push(...batcher.push(m, line));
          }
        }
        steps.push(...batcher.end());
        const handedOut = new Set<number>(); // lines of messages handed out so far
        const perStream: number[][] = [[], [], []];
        const printed: number[] = [];
        for (const step of steps) {
          if (step.kind === "state") {
            printed.push(step.line);
            for (let l = 1; l < step.line; l++) {
              const isMessage = lineOf.some((ls) => ls.includes(l));
              if (isMessage && !handedOut.has(l)) throw new Error(`STATE of line ${step.line} before the message of line ${l}`);
            }
            expect(JSON.parse(step.json)).toEqual({ line: step.line });
            continue;
          }
          const s = Number(step.stream.slice(1));
          expect(step.batch.messages.length).toBeGreaterThan(0);
          expect(step.batch.messages.length).toBeLessThanOrEqual(batchSize);
          for (const m of step.batch.messages) {
            const l = m.action === "activate_version" ? (lineOf[s] as number[])[(perStream[s] as number[]).length] : (m.data?.id as number);
            perStream[s]?.push(l as number);
            handedOut.add(l as number);
            // The batch's table_version is each of its messages' own version (or none for all).
            const version = versionOf.get(l as number);
            expect(step.batch.table_version ?? null).toBe(version === null || version === undefined ? null : BigInt(version));
          }
        }
        expect(perStream).toEqual(lineOf);
        expect(printed).toEqual(stateLines);
        // Sequences increase through each stream.
        for (let s = 0; s < 3; s++) {
          const seqs = steps.flatMap((st) =>
            st.kind === "batch" && st.stream === `s${s}` ? st.batch.messages.map((m) => m.sequence as bigint) : [],
          );
          for (let i = 1; i < seqs.length; i++) expect(seqs[i] as bigint).toBeGreaterThan(seqs[i - 1] as bigint);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a repeated identical SCHEMA changes nothing; a changed one flushes the stream's records first; a RECORD's version goes to table_version", () => {
    const b = new SingerBatcher({ sequencer: () => createSequencer() });
    b.push(schema("t"), 1);
    b.push({ type: "RECORD", stream: "t", record: { id: 1 }, version: 7 }, 2);
    expect(b.push(schema("t"), 3)).toEqual([]);
    const steps = b.push(schema("t", { name: { type: "string" } }), 4);
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatchObject({
      kind: "batch",
      stream: "t",
      firstLine: 2,
      lastLine: 2,
      batch: { table_name: "t", key_names: ["id"], table_version: 7n },
    });
    b.push({ type: "RECORD", stream: "t", record: { id: 2, name: "x", _sdc_deleted_at: "2026-11-27T10:00:00Z" } }, 5);
    const [last] = b.end();
    expect(last?.kind === "batch" && last.batch.messages[0]?.action).toBe("delete");
    expect(last?.kind === "batch" && "table_version" in last.batch).toBe(false);
  });

  it("errors name the line: key_properties change, RECORD before SCHEMA, a bad version, a stream name PostgreSQL would truncate", () => {
    const b = new SingerBatcher({ sequencer: () => createSequencer() });
    b.push(schema("t"), 1);
    const error = (f: () => unknown): SingerInputError => {
      try {
        f();
      } catch (e) {
        if (e instanceof SingerInputError) return e;
        throw e;
      }
      throw new Error("no error");
    };
    expect(error(() => b.push({ ...schema("t"), key_properties: ["id", "x"] }, 2))).toMatchObject({ line: 2, code: "SINGER_INVALID" });
    expect(error(() => b.push({ type: "RECORD", stream: "u", record: {} }, 3)).message).toContain(
      'RECORD for stream "u" before its SCHEMA',
    );
    expect(error(() => b.push({ type: "RECORD", stream: "t", record: { id: 1 }, version: 1.5 }, 4)).message).toContain(
      "version must be an integer",
    );
    expect(error(() => b.push(schema("x".repeat(64)), 5)).message).toContain("63 bytes");
  });

  it("a SCHEMA or RECORD error stays short: a huge property name is cut, and at most 20 problems are listed", () => {
    const b = new SingerBatcher({ sequencer: () => createSequencer() });
    const error = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        if (e instanceof SingerInputError) return e;
      }
      throw new Error("no SingerInputError");
    };
    // Found by test/hostile-singer.test.ts: a 1 MB property name was echoed whole, twice (path and problem).
    const huge = `x"); DROP TABLE y; --`.repeat(50_000);
    const one = error(() => b.push(schema("huge", { [huge]: { type: "string" } }), 1));
    expect(one.message).toContain("63 bytes");
    expect(one.message.length).toBeLessThan(1_000);
    const many = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`p${i}`, { type: "no-such-type" }]));
    const listed = error(() => b.push(schema("many", many), 2)).message;
    expect(listed).toContain("and 10 more");
    expect(listed.split("\n").length).toBe(1 + 20 + 1);
  });
});
