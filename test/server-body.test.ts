// seqload serve's body parser (src/server/body.ts): small bodies in one go, large ones yielding,
// the same values and errors either way.
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { parseJson } from "../src/json.js";
import { ONE_GO_MAX_CHARS, parseBody } from "../src/server/body.js";

function batchText(messages: number): string {
  const parts: string[] = [];
  for (let i = 0; i < messages; i++) {
    parts.push(
      `{"action":"upsert","sequence":${1795465705836000000n + BigInt(i)},"data":{"id":${i},"name":"name ${i}","amount":${i / 10}}}`,
    );
  }
  return `{"table_name":"t","key_names":["id"],"messages":[${parts.join(",")}]}`;
}

/** Resolves `parse(text)` and counts the event-loop turns (setImmediate) taken meanwhile. */
async function turnsDuring(parse: () => Promise<unknown>): Promise<{ value: unknown; turns: number }> {
  let turns = 0;
  let done = false;
  const spin = (): void => {
    if (done) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { value: await parse(), turns };
  } finally {
    done = true;
  }
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
  throw new Error("expected the parse to fail");
}

function syncErrorOf(text: string): string {
  try {
    parseJson(text);
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
  throw new Error("expected the parse to fail");
}

describe("parseBody", () => {
  it("parses a 1,000-message body in one go: no event-loop turn before its value is there", async () => {
    const text = batchText(1000);
    expect(text.length).toBeLessThanOrEqual(ONE_GO_MAX_CHARS);
    const { value, turns } = await turnsDuring(() => parseBody(text));
    expect(turns).toBe(0);
    expect(isDeepStrictEqual(value, parseJson(text))).toBe(true);
  });

  it("gives the event loop turns while it parses a large body, to the same value", async () => {
    const text = batchText(40_000); // about 4 MB: well over the one-go size, and many 4 ms slices
    expect(text.length).toBeGreaterThan(ONE_GO_MAX_CHARS);
    const { value, turns } = await turnsDuring(() => parseBody(text));
    expect(turns).toBeGreaterThan(0);
    expect(isDeepStrictEqual(value, parseJson(text))).toBe(true);
  });

  it("fails with parseJson's message and position, small body or large", async () => {
    for (const text of [batchText(10), batchText(40_000)]) {
      const cut = text.slice(0, -2); // stops inside the messages array
      const broken = text.replace('"name 7"', '"name 7",,'); // a stray comma early on
      expect(await errorOf(parseBody(cut))).toBe(syncErrorOf(cut));
      expect(await errorOf(parseBody(broken))).toBe(syncErrorOf(broken));
      expect(syncErrorOf(broken)).toMatch(/position \d+/);
    }
  });
});
