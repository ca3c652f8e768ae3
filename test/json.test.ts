// parseJson (src/json.ts): lossless-json's grammar, values and error messages, without its cost.
// Differential tests against lossless-json itself, the contract's number rules, and memory.
import { isDeepStrictEqual } from "node:util";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { LosslessNumber, parse as losslessParse } from "lossless-json";
import { describe, expect, it } from "vitest";
import { parseJson, parseJsonYielding, parseNumberToken } from "../src/json.js";

type Outcome = { value: unknown } | { error: string };

function outcome(parse: (text: string) => unknown, text: string): Outcome {
  try {
    return { value: parse(text) };
  } catch (e) {
    return { error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

/** lossless-json with the same number rules: what parseJson replaced. */
const reference = (text: string) => losslessParse(text, undefined, parseNumberToken);

/** The same value, or the same error (message and position), as lossless-json. */
function agrees(text: string): void {
  const ours = outcome(parseJson, text);
  const theirs = outcome(reference, text);
  if ("value" in ours && "value" in theirs) {
    expect(isDeepStrictEqual(ours.value, theirs.value), `${JSON.stringify(text)}: values differ`).toBe(true);
  } else {
    expect(ours, JSON.stringify(text)).toEqual(theirs);
  }
}

describe("parseJson", () => {
  it("parses what lossless-json parses, to the same values", () => {
    fc.assert(
      fc.property(fc.json(), (text) => agrees(text)),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: "binary" }), fc.constantFrom(0, 2), (value, indent) =>
        agrees(JSON.stringify(value, null, indent)),
      ),
      { numRuns: 2000 },
    );
  });

  it("fails where lossless-json fails, with its message and position", () => {
    const unit = fc.constantFrom(...'{}[]",:0123456789-+.eEtrufalsn \n\t\\u/bxé—🎉\u0001'.split(""));
    // Valid JSON broken in a few places, and short random text.
    fc.assert(
      fc.property(fc.json(), fc.array(fc.tuple(fc.nat(), fc.nat(2), unit), { minLength: 1, maxLength: 4 }), (json, edits) => {
        let text = json;
        for (const [p, kind, c] of edits) {
          const q = p % (text.length + 1);
          text = kind === 0 ? text.slice(0, q) + text.slice(q + 1) : text.slice(0, q) + c + text.slice(q + (kind === 1 ? 0 : 1));
        }
        agrees(text);
      }),
      { numRuns: 20000 },
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 24 }), (text) => agrees(text)),
      { numRuns: 20000 },
    );
    for (const text of [
      "",
      " \n",
      "-",
      "-a",
      "1.",
      "1.e5",
      "1e",
      "1e+",
      ".5",
      "007",
      "-Infinity",
      "NaN",
      "tru",
      "nul",
      "[1,]",
      "[1 2]",
      "[",
      '{"a":1,}',
      '{"a" 1}',
      '{"a":}',
      '{"a":1 "b":2}',
      "{",
      '{"a"',
      '"\\u12"',
      '"\\x41"',
      '"abc\\',
      '"abc',
      '"a\tb"',
      '"\\"',
      "1 2",
      '{"a": [1, 2}',
    ]) {
      expect(outcome(parseJson, text), JSON.stringify(text)).toEqual(outcome(reference, text));
      expect(outcome(parseJson, text)).toMatchObject({ error: expect.stringMatching(/^SyntaxError: .* at position \d+$/) });
    }
  });

  it("decides number tokens as parseNumberToken does, on its fast paths too", () => {
    const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: min, maxLength: max });
    const integerPart = fc.oneof(
      fc.constant("0"),
      fc.tuple(fc.constantFrom(..."123456789"), digits(0, 20)).map(([a, b]) => a + b),
    );
    const token = fc
      .tuple(
        fc.boolean(),
        integerPart,
        fc.option(digits(1, 18)),
        fc.option(fc.tuple(fc.constantFrom("e", "E"), fc.constantFrom("", "+", "-"), digits(1, 3))),
      )
      .map(([minus, int, frac, exp]) => `${minus ? "-" : ""}${int}${frac === null ? "" : `.${frac}`}${exp === null ? "" : exp.join("")}`);
    const sameAs = (t: string) => {
      const ours = (parseJson(`[${t}]`) as unknown[])[0];
      expect(isDeepStrictEqual(ours, parseNumberToken(t)), t).toBe(true);
    };
    fc.assert(fc.property(token, sameAs), { numRuns: 20000 });
    // Doubles as JavaScript prints them, and the borders of the fast paths.
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => sameAs(String(d))),
      { numRuns: 5000 },
    );
    for (const t of [
      "0.000001",
      "0.0000001",
      "0.0000012",
      "-0.000001",
      "0.1",
      "0.10",
      "-0.0",
      "-0",
      "0",
      "999999999999999",
      "9999999999999999",
      "99999999999999999",
      "-9007199254740993",
      "123456789012.345",
      "1234567890123.456",
      "0.000000000000001",
      "1.5e0",
    ]) {
      sameAs(t);
    }
  });

  it("keeps every number as written: number, bigint or LosslessNumber", () => {
    const value = (token: string) => (parseJson(`[${token}]`) as unknown[])[0];
    expect(value("0")).toBe(0);
    expect(value("-123")).toBe(-123);
    expect(value("999999999999999")).toBe(999999999999999); // 15 digits: the fast path
    expect(value("-999999999999999")).toBe(-999999999999999);
    expect(value("9007199254740991")).toBe(9007199254740991);
    expect(value("9007199254740993")).toBe(9007199254740993n);
    expect(value("1795465705836060200")).toBe(1795465705836060200n);
    expect(value("-9223372036854775808")).toBe(-9223372036854775808n);
    expect(value("19.99")).toBe(19.99);
    expect(value("-0.000001")).toBe(-0.000001);
    expect(value("123456789012.345")).toBe(123456789012.345);
    expect(value("1e+21")).toBe(1e21);
    expect(value("1e21")).toEqual(new LosslessNumber("1e21")); // String(1e21) is "1e+21"
    for (const token of ["-0", "-0.0", "1.00", "1E+2", "1e2", "1e-400", "12345678901234567890.5", "0.30000000000000001"]) {
      expect(value(token), token).toEqual(new LosslessNumber(token));
    }
  });

  it("refuses a key repeated in one object with a different value, as lossless-json does; an equal repeat changes nothing", () => {
    expect(() => parseJson('{"a": 1, "b": {"v": "x", "v": "y"}}')).toThrow("Duplicate key 'v' encountered at position 26");
    expect(() => parseJson('{"a": 1, "a": 2}')).toThrow("Duplicate key 'a' encountered at position 10");
    expect(() => parseJson('{"a": [1, {"b": 2}], "a": [1, {"b": 3}]}')).toThrow(/Duplicate key 'a'/);
    expect(parseJson('{"a": 1, "a": 1}')).toEqual({ a: 1 });
    expect(parseJson('{"a": {"x": [1.50]}, "b": 2, "a": {"x": [1.50]}}')).toEqual({ a: { x: [new LosslessNumber("1.50")] }, b: 2 });
    // lossless-json's equality: an empty array equals an empty object, and the last one stays.
    expect(parseJson('{"a": [], "a": {}}')).toEqual({ a: {} });
    // Not a repeat: inherited names and the same name in different objects.
    expect(parseJson('{"toString": 1, "x": {"toString": 2}}')).toEqual({ toString: 1, x: { toString: 2 } });
    expect(parseJson('{"__proto__": 1, "__proto__": 1}')).toEqual(JSON.parse('{"__proto__": 1}'));
    expect(() => parseJson('{"__proto__": 1, "__proto__": 2}')).toThrow("Duplicate key '__proto__' encountered at position 18");
    // Repeats anywhere, checked against lossless-json.
    const key = fc.constantFrom("a", "b", "__proto__", "toString");
    const value = fc.oneof(
      fc.constantFrom("1", "1.0", "1.00", "[]", "{}", '"x"', "null", "12345678901234567890"),
      fc.json({ maxDepth: 2 }),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(key, value), { maxLength: 6 }), (entries) =>
        agrees(`{${entries.map(([k, v]) => `"${k}":${v}`).join(",")}}`),
      ),
      { numRuns: 5000 },
    );
  });

  it("reads keys right however many share a length (the key cache compares the text)", () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `k${String(i).padStart(4, "0")}`);
    const objects = keys.map((k, i) => ({ [k]: i, [keys[(i * 7) % keys.length] as string]: "x", long_key_over_13: i }));
    expect(parseJson(JSON.stringify(objects))).toEqual(JSON.parse(JSON.stringify(objects)));
    expect(parseJson('[{"a\\u0062": 1}, {"ab": 2}, {"ab": 3, "a\\u0062": 3}]')).toEqual([{ ab: 1 }, { ab: 2 }, { ab: 3 }]);
  });

  it("makes __proto__ an own property, never the prototype", () => {
    const o = parseJson('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    expect(Object.keys(o)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("decodes escapes, lone surrogates and non-ASCII text", () => {
    expect(
      parseJson('["\\"\\\\\\/\\b\\f\\n\\r\\t", "\\u00e9\\u2014\\ud83c\\udf89", "\\ud800", "é—🎉 and a long enough tail", "\\u0000"]'),
    ).toEqual(['"\\/\b\f\n\r\t', "é—🎉", "\ud800", "é—🎉 and a long enough tail", "\u0000"]);
  });

  it("parses 2,000 levels of nesting; refuses 100,000 with a SyntaxError and its position, not a stack overflow", () => {
    expect(() => parseJson(`${"[".repeat(2000)}1${"]".repeat(2000)}`)).not.toThrow();
    const deep = `{"a": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    expect(() => parseJson(deep)).toThrow(SyntaxError);
    expect(() => parseJson(deep)).toThrow(/nested too deeply.* at position 1005$/);
  });

  it("keeps nothing of the input text alive: the strings it returns are copies, not slices", () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const used = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    // 8 MiB of text of which a few long strings are kept (a slice would keep all of it). Built and
    // parsed in a function of its own: no register of this frame holds the text or the object.
    const parseAndKeep = (): [string, string[], number] => {
      const text = `{"kept": "a table name, long enough to be a slice", "filler": "${"x".repeat(8 << 20)}", "also": ["another long string value"]}`;
      const o = parseJson(text) as { kept: string; also: string[] };
      return [o.kept, o.also, used()];
    };
    const [kept, also, before] = parseAndKeep();
    const after = used();
    expect(kept).toBe("a table name, long enough to be a slice");
    expect(also).toEqual(["another long string value"]);
    expect(before - after, "the input text was freed").toBeGreaterThan(7 << 20);
  });

  it("parseJsonYielding gives the same values and errors as parseJson", async () => {
    const same = async (text: string) => {
      let ours: Outcome;
      try {
        ours = { value: await parseJsonYielding(text, 0) };
      } catch (e) {
        ours = { error: `${(e as Error).name}: ${(e as Error).message}` };
      }
      const theirs = outcome(parseJson, text);
      if ("value" in ours && "value" in theirs) expect(isDeepStrictEqual(ours.value, theirs.value), text).toBe(true);
      else expect(ours, JSON.stringify(text)).toEqual(theirs);
    };
    const unit = fc.constantFrom(...'{}[]",:0123456789-+.eEtrufalsn \n\\u'.split(""));
    await fc.assert(fc.asyncProperty(fc.json(), same), { numRuns: 1000 });
    await fc.assert(
      fc.asyncProperty(fc.json(), fc.array(fc.tuple(fc.nat(), fc.nat(2), unit), { minLength: 1, maxLength: 3 }), async (json, edits) => {
        let text = json;
        for (const [p, kind, c] of edits) {
          const q = p % (text.length + 1);
          text = kind === 0 ? text.slice(0, q) + text.slice(q + 1) : text.slice(0, q) + c + text.slice(q + (kind === 1 ? 0 : 1));
        }
        await same(text);
      }),
      { numRuns: 3000 },
    );
    for (const text of [
      '{"a": 1, "a": 2}',
      '{"a": {"b": 1, "b": 2}}',
      '{"m": [1, 2,]}',
      "[[[",
      '{"a": 1}x',
      `{"a": ${"[".repeat(100_000)}`,
    ]) {
      await same(text);
    }
  });

  it("parseJsonYielding lets other work run during a long parse, and parses in between do not disturb it", async () => {
    const messages = Array.from(
      { length: 20_000 },
      (_, i) => `{"action":"upsert","sequence":17954657058360${String(i).padStart(5, "0")},"data":{"id":${i},"name":"n ${i}"}}`,
    );
    const text = `{"table_name":"t","messages":[${messages.join(",")}]}`;
    let turns = 0;
    const ticker = setInterval(() => {
      turns++;
      parseJson('{"other": [1, 2.5, "x"]}'); // another request's parse, between this one's turns
    }, 0);
    const [a, b] = await Promise.all([parseJsonYielding(text, 0), parseJsonYielding(`[${text}]`, 0)]);
    clearInterval(ticker);
    expect(turns).toBeGreaterThan(0);
    expect(isDeepStrictEqual(a, parseJson(text))).toBe(true);
    expect(isDeepStrictEqual(b, [a])).toBe(true);
    expect((a as { messages: { sequence: bigint }[] }).messages[19_999]?.sequence).toBe(1795465705836019999n);
  });
});
