// The CLI's input splitter: the same batches, lines and columns whatever the chunk boundaries.
import { describe, expect, it } from "vitest";
import { Utf8Decoder, firstInvalidUtf8 } from "../src/cli/input.js";
import { BatchSplitter, type RawBatch, SplitError } from "../src/cli/splitter.js";

function split(text: string, chunkSize: number): (RawBatch & { incomplete?: boolean })[] {
  const s = new BatchSplitter();
  const out: (RawBatch & { incomplete?: boolean })[] = [];
  for (let i = 0; i < text.length; i += chunkSize) out.push(...s.push(text.slice(i, i + chunkSize)));
  out.push(...s.end());
  return out;
}

/** Every chunk size from 1 to 9, and the whole text at once, must agree. */
function splitAll(text: string): RawBatch[] {
  const whole = split(text, text.length || 1);
  for (let n = 1; n <= 9; n++) expect(split(text, n), `chunk size ${n}`).toEqual(whole);
  return whole;
}

const brief = (batches: RawBatch[]) => batches.map((b) => [b.text.trim(), b.line, b.column]);

describe("BatchSplitter", () => {
  it("JSON Lines: one batch per line, blank lines and CRLF tolerated, braces inside strings ignored", () => {
    const text = '\n{"a":"}{\\"["}\r\n\n  {"b":[1,{"c":2}]}\n{"d":"\\\\"}';
    expect(brief(splitAll(text))).toEqual([
      ['{"a":"}{\\"["}', 2, 1],
      ['{"b":[1,{"c":2}]}', 4, 1],
      ['{"d":"\\\\"}', 5, 1],
    ]);
  });

  it("a pretty-printed object, and several of them in a row", () => {
    const one = '{\n  "table_name": "t",\n  "messages": [{"x": "}"}]\n}\n';
    expect(brief(splitAll(one))).toEqual([[one.trim(), 1, 1]]);
    const two = `${one}\n  ${one}`;
    expect(brief(splitAll(two))).toEqual([
      [one.trim(), 1, 1],
      [one.trim(), 6, 3],
    ]);
  });

  it("an array of batches: its elements one by one, with where each starts", () => {
    const text = '[\n  {"a": "],"},\n  {"b": [[1], 2]} ,{"c": {}}\n]\n';
    expect(brief(splitAll(text))).toEqual([
      ['{"a": "],"}', 2, 3],
      ['{"b": [[1], 2]}', 3, 3],
      ['{"c": {}}', 3, 20],
    ]);
    expect(splitAll("[]")).toEqual([]);
    // Scalars are handed on (the loader rejects them as batches).
    expect(brief(splitAll('[1, "x"]'))).toEqual([
      ["1", 1, 2],
      ['"x"', 1, 5],
    ]);
  });

  it("skips a byte order mark", () => {
    expect(brief(splitAll('\uFEFF{"a":1}\n'))).toEqual([['{"a":1}', 1, 1]]);
  });

  it("reports structure errors with their position", () => {
    const err = (text: string) => {
      try {
        split(text, 3);
      } catch (e) {
        if (e instanceof SplitError) return [e.line, e.column, e.reason];
        throw e;
      }
      return null;
    };
    expect(err("")).toEqual([1, 1, expect.stringContaining("the input is empty")]);
    expect(err("\n  x")).toEqual([2, 3, expect.stringContaining('unexpected "x"')]);
    expect(err("[1,,2]")).toEqual([1, 4, expect.stringContaining("unexpected ','")]);
    expect(err('[{"a":1}\n{"b":2}]')).toEqual([2, 1, expect.stringContaining("expected ',' or ']'")]);
    expect(err('[{"a":1},]')).toEqual([1, 10, expect.stringContaining("unexpected ']' after ','")]);
    expect(err('[{"a":1}')).toEqual([1, 9, expect.stringContaining("not closed")]);
    expect(err('[{"a":1}] x')).toEqual([1, 11, expect.stringContaining("after the closing ']'")]);
    expect(err('{\n"a":1\n}\n]')).toEqual([4, 1, expect.stringContaining("after the end of a batch object")]);
  });

  it("hands unclosed objects and stray text to the parser, which says where they break", () => {
    expect(split('{\n"a": [1,\n', 4)).toEqual([{ text: '{\n"a": [1,\n', line: 1, column: 1, incomplete: true }]);
    // JSON Lines: text after the first object on its line makes that line malformed; the object
    // is not handed out (it would otherwise load before the error is seen).
    expect(() => splitAll('{"a":1}}\n{"b":2}\n')).toThrow(expect.objectContaining({ line: 1, column: 8 }));
    expect(() => splitAll('{"a":1} xyz')).toThrow(/after the batch object on the same line/);
    // A later line is cut whole and handed to the parser, which fails on it.
    expect(brief(splitAll('{"a":1}\n{"b":2} xyz\n'))).toEqual([
      ['{"a":1}', 1, 1],
      ['{"b":2} xyz', 2, 1],
    ]);
  });
});

describe("firstInvalidUtf8", () => {
  it("finds the first byte that starts no well-formed UTF-8 sequence", () => {
    const at = (bytes: number[]) => firstInvalidUtf8(new Uint8Array(bytes));
    expect(at([0x61, 0x62])).toBe(-1);
    expect(at([0xf0, 0x9f, 0x8e, 0x89, 0xc3, 0xa9])).toBe(-1); // 🎉 é
    expect(at([0x61, 0xff, 0xfe])).toBe(1);
    expect(at([0xc0, 0xaf])).toBe(0); // overlong "/"
    expect(at([0xed, 0xa0, 0xbd])).toBe(0); // encoded surrogate (CESU-8)
    expect(at([0x61, 0xe2, 0x82])).toBe(1); // cut short
    expect(at([0x41, 0xe9, 0x41])).toBe(1); // Latin-1 é
  });
});

describe("Utf8Decoder", () => {
  /** Decodes `bytes` in chunks of `size`; the text, or where the first invalid byte is. */
  function decode(bytes: Buffer, size: number): string | { bad: number; at: number } {
    const d = new Utf8Decoder((piece, bad, offset) =>
      Object.assign(new Error("invalid"), { where: { bad: piece[bad] as number, at: offset + bad } }),
    );
    let text = "";
    try {
      for (let i = 0; i < bytes.length; i += size) text += d.decode(bytes.subarray(i, i + size)).join("");
      d.end();
    } catch (e) {
      return (e as { where: { bad: number; at: number } }).where;
    }
    return text;
  }

  it("decodes what Buffer#toString decodes, whatever the chunk boundaries (sequences of 1 to 4 bytes cut anywhere)", () => {
    const text = '\uFEFF{"a":"é—🎉x"}\n{"b":"ÿ\u0800\uFFFF𐀀"}\n';
    const bytes = Buffer.from(text, "utf8");
    for (let size = 1; size <= bytes.length; size++) expect(decode(bytes, size), `chunk size ${size}`).toBe(text);
  });

  it("decodes every ASCII byte as itself, in ASCII-only chunks and in chunks mixed with longer sequences", () => {
    const ascii = String.fromCharCode(...Array.from({ length: 128 }, (_, i) => i));
    const text = `${ascii}é${ascii}🎉${ascii}`;
    const bytes = Buffer.from(text, "utf8");
    for (const size of [1, 7, 128, 129, 130, 200, bytes.length]) expect(decode(bytes, size), `chunk size ${size}`).toBe(text);
  });

  it("makes strings of one byte per character from ASCII (TextDecoder made two-byte strings)", () => {
    const bytes = Buffer.alloc(4 << 20, "x");
    const d = new Utf8Decoder(() => new Error("invalid"));
    const before = process.memoryUsage();
    const pieces = d.decode(bytes);
    const after = process.memoryUsage();
    expect(pieces.join("").length).toBe(bytes.length);
    // A two-byte string would take 8 MiB; a GC in between can only make the growth smaller.
    expect(after.heapUsed + after.external - before.heapUsed - before.external).toBeLessThan(6 << 20);
  });

  it("refuses invalid bytes at their input offset, also when the chunk boundary cuts a sequence, and a sequence cut by the end", () => {
    const cases: [number[], { bad: number; at: number }][] = [
      [[0x61, 0xe9, 0x61], { bad: 0xe9, at: 1 }], // Latin-1 é
      [[0x61, 0x62, 0xe2, 0x82, 0x41], { bad: 0xe2, at: 2 }], // a 3-byte sequence broken by "A"
      [[0x61, 0xc0, 0xaf], { bad: 0xc0, at: 1 }], // overlong "/"
      [[0x61, 0xed, 0xa0, 0xbd], { bad: 0xed, at: 1 }], // encoded surrogate
      [[0x61, 0x62, 0x63, 0xf0, 0x9f, 0x8e], { bad: 0xf0, at: 3 }], // cut by the end of the input
      [[0xff, 0xfe, 0x7b, 0x00], { bad: 0xff, at: 0 }], // UTF-16LE with its BOM
      [[0x61, 0x80], { bad: 0x80, at: 1 }], // a stray continuation byte
    ];
    for (const [bytes, where] of cases) {
      for (let size = 1; size <= bytes.length; size++)
        expect(decode(Buffer.from(bytes), size), `${bytes.join(",")} in chunks of ${size}`).toEqual(where);
    }
  });
});
