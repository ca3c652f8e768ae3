// The README's library example runs as written (against this file's database), so it cannot rot.
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { useDatabase } from "./helpers/context.js";

const ctx = useDatabase("readme");
const root = new URL("../", import.meta.url);

describe("README", () => {
  it("the 30-second tour runs as written and prints what the README says", async () => {
    const readme = readFileSync(new URL("README.md", root), "utf8");
    const tour = readme.slice(readme.indexOf("## A 30-second tour"));
    const code = /```ts\n([\s\S]*?)```/.exec(tour)?.[1];
    expect(code).toContain('from "seqload"');
    // Inside the package folder so that `import "seqload"` resolves to this package (self-reference, built dist/).
    const file = new URL(`.readme-example-${process.pid}.mjs`, root);
    writeFileSync(file, code as string);
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file.pathname], { env: { ...process.env, DATABASE_URL: ctx.url } });
      const printed = /\/\/ (\{ table: 'customers'.*\})/.exec(code as string)?.[1];
      expect(stdout.replace(/\s+/g, " ").trim()).toBe(printed);
    } finally {
      rmSync(file, { force: true });
    }
    expect(await ctx.query("select id, name, has_magic from customers order by id")).toEqual([
      { id: "1", name: "Finn", has_magic: false },
      { id: "2", name: "Jake", has_magic: false },
    ]);
  });
});

describe("README: inside your own transaction", () => {
  it("the ETL example commits the rows and its bookmark together, and prints what the README says", async () => {
    const readme = readFileSync(new URL("README.md", root), "utf8");
    const section = readme.slice(readme.indexOf("### Inside your own transaction"));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code).toContain("loader.loadBatch(batch, { client })");
    const file = new URL(`.readme-etl-${process.pid}.mjs`, root);
    writeFileSync(file, code as string);
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file.pathname], { env: { ...process.env, DATABASE_URL: ctx.url } });
      const printed = /\/\/ (\{ table: 'orders'.*\})/.exec(code as string)?.[1];
      expect(stdout.replace(/\s+/g, " ").trim()).toBe(printed);
    } finally {
      rmSync(file, { force: true });
    }
    expect(await ctx.query("select id::int, total::float8 from orders order by id")).toEqual([
      { id: 1, total: 9.5 },
      { id: 2, total: 12 },
    ]);
    expect(await ctx.query("select job, position::text from etl_bookmarks")).toEqual([{ job: "orders", position: "1700000000002" }]);
    expect(await ctx.query("select received from seqload.loads where table_name = 'orders'")).toEqual([{ received: 2 }]);
  });
});
