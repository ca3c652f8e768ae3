// dateTimeProblem has a regex-free fast path for the common form; it must never accept what the
// full check refuses, nor refuse anything (it only ever defers to the full check).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dateTimeProblem, dateTimeProblemInFull } from "../src/values.js";

const pad = (n: number, w: number) => String(n).padStart(w, "0");

// Near-valid date-times: every field may be out of range, separators and offsets vary.
const nearDateTime = fc
  .record({
    y: fc.integer({ min: 0, max: 9999 }),
    mo: fc.integer({ min: 0, max: 13 }),
    d: fc.integer({ min: 0, max: 32 }),
    h: fc.integer({ min: 0, max: 25 }),
    mi: fc.integer({ min: 0, max: 60 }),
    s: fc.integer({ min: 0, max: 61 }),
    sep: fc.constantFrom("T", "t", " ", "x"),
    frac: fc.option(fc.stringMatching(/^[0-9]{0,9}$/), { nil: undefined }),
    off: fc.constantFrom("Z", "z", "+00:00", "-05:30", "+15:59", "+16:00", "-02:60", "+0530", "+05", "", " Z", "Q"),
  })
  .map(
    (r) =>
      `${pad(r.y, 4)}-${pad(r.mo, 2)}-${pad(r.d, 2)}${r.sep}${pad(r.h, 2)}:${pad(r.mi, 2)}:${pad(r.s, 2)}${r.frac === undefined ? "" : `.${r.frac}`}${r.off}`,
  );

describe("dateTimeProblem's fast path", () => {
  it("agrees with the full check on near-valid date-times", () => {
    fc.assert(
      fc.property(nearDateTime, (s) => {
        expect(dateTimeProblem(s)).toBe(dateTimeProblemInFull(s));
      }),
      { numRuns: 20000 },
    );
  });

  it("agrees with the full check when any one character is replaced", () => {
    const base = "2024-02-29T23:59:59.123456+05:30";
    fc.assert(
      fc.property(fc.nat({ max: base.length - 1 }), fc.string({ minLength: 1, maxLength: 1 }), (i, c) => {
        const s = base.slice(0, i) + c + base.slice(i + 1);
        expect(dateTimeProblem(s)).toBe(dateTimeProblemInFull(s));
      }),
      { numRuns: 5000 },
    );
  });

  it("accepts the common forms and refuses impossible dates", () => {
    expect(dateTimeProblem("2019-11-26T22:29:16Z")).toBeNull();
    expect(dateTimeProblem("2019-11-26T22:29:16.123456-05:00")).toBeNull();
    expect(dateTimeProblem("2023-02-29T00:00:00Z")).toMatch(/not a valid calendar date/);
    expect(dateTimeProblem("2019-11-26T22:29:16.1234567Z")).toMatch(/more than 6 fractional/);
    expect(dateTimeProblem("2019-11-26T24:00:00Z")).toBeNull(); // end of day: the full check decides
  });
});
