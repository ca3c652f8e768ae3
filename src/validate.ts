/**
 * Step 1 of the data path: check a batch completely before anything touches the database, and
 * report every problem at once with its message index and JSON path.
 */
import AjvDraft04Module from "ajv-draft-04";
import type { ErrorObject, ValidateFunction } from "ajv-draft-04";
import { isLosslessNumber } from "lossless-json";
import { RE2JS } from "re2js";
import { type ColumnType, columnTypeForSchema } from "./columns.js";
import { BatchValidationError, type ValidationIssue } from "./errors.js";
import { POSTGRES_SYSTEM_COLUMNS, SYSTEM_COLUMNS, identifierProblem } from "./identifiers.js";
import { parseSequence } from "./sequence.js";
import type { JsonSchema } from "./types.js";
import { dateProblem, dateTimeProblem, exactInteger, fitsInt64, isNumeric, jsonText, numericRangeProblem } from "./values.js";

export type Action = "upsert" | "delete" | "activate_version";

export interface ValidatedMessage {
  /** Position in the batch's `messages`. */
  index: number;
  action: Action;
  sequence: bigint;
  /** The record (upsert/delete); undefined for activate_version. */
  data: Record<string, unknown> | undefined;
}

export interface ValidatedBatch {
  table: string;
  keyNames: string[];
  /** Column type per property, in schema order; null-only properties are left out. */
  columns: Map<string, ColumnType>;
  messages: ValidatedMessage[];
  tableVersion: bigint | null;
}

/** Summary returned by the public `validateBatch`. */
export interface BatchSummary {
  table: string;
  keyNames: string[];
  received: number;
  columns: Record<string, ColumnType>;
}

const ALLOWED_TOP_LEVEL = new Set(["table_name", "key_names", "schema", "messages", "table_version", "bookmark_names"]);
const ALLOWED_MESSAGE_FIELDS = new Set(["action", "sequence", "data", "time_extracted"]);
const ACTIONS = new Set<string>(["upsert", "delete", "activate_version"]);
const SYSTEM = new Set<string>(SYSTEM_COLUMNS);
const PG_SYSTEM = new Set<string>(POSTGRES_SYSTEM_COLUMNS);
/** PostgreSQL's hard limit on columns per table. */
const MAX_COLUMNS = 1600;
/** Deeper JSON than this is refused: PostgreSQL's jsonb parser would hit its stack depth limit. */
const MAX_JSON_DEPTH = 1000;

export interface ValidateOptions {
  /** Stop collecting after this many problems (default 1000). */
  maxIssues?: number;
  /** Largest number of messages accepted (default: unlimited; the HTTP server uses 20,000). */
  maxMessages?: number;
}

/** JSON Pointer segment escaping (RFC 6901). */
function pointer(...parts: (string | number)[]): string {
  return parts.map((p) => `/${String(p).replaceAll("~", "~0").replaceAll("/", "~1")}`).join("");
}

// Draft 4 semantics (what Stitch uses), lenient about unknown keywords and formats: Stitch's
// validator does not enforce formats; seqload checks date-time/date itself where they become
// typed columns. multipleOfPrecision avoids false rejections such as 1.275888 vs 1e-5.
// ajv-draft-04 is CommonJS with a default export; under NodeNext ESM the class sits on .default.
const AjvDraft04 = ((AjvDraft04Module as unknown as { default?: typeof AjvDraft04Module }).default ??
  AjvDraft04Module) as unknown as typeof AjvDraft04Module.default;
// Schema "pattern"s run on RE2 (linear time): a sender's pattern like ^(a+)+$ cannot hang the
// loader the way a backtracking RegExp would.
const re2Engine = Object.assign(
  (pattern: string) => {
    const re = RE2JS.compile(pattern);
    return { test: (s: string) => re.matcher(s).find() };
  },
  { code: "re2js" },
);
const ajv = new AjvDraft04({
  code: { regExp: re2Engine },
  allErrors: true,
  strict: false,
  validateFormats: false,
  multipleOfPrecision: 9,
  allowMatchingProperties: true,
});

const compiled = new Map<string, ValidateFunction>();
const compiledByObject = new WeakMap<object, ValidateFunction>();

function compileSchema(schema: JsonSchema): ValidateFunction {
  const cachedByObject = compiledByObject.get(schema);
  if (cachedByObject) return cachedByObject;
  const key = JSON.stringify(schema);
  let fn = compiled.get(key);
  if (fn === undefined) {
    // Validate records against a copy without $schema/id so that a sender's draft URI or id cannot
    // make Ajv look up another meta-schema or collide with an earlier schema's id.
    const { $schema: _s, id: _id, $id: _id2, ...rest } = schema as Record<string, unknown>;
    fn = ajv.compile(rest);
    if (compiled.size > 500) compiled.clear();
    compiled.set(key, fn);
  }
  compiledByObject.set(schema, fn);
  return fn;
}

function compileProperty(propSchema: unknown): ValidateFunction | null {
  if (typeof propSchema !== "object" || propSchema === null) return null;
  try {
    return compileSchema(propSchema as JsonSchema);
  } catch {
    return null;
  }
}

/** Replace bigint and LosslessNumber (which Ajv does not know) by nearby numbers, for validation only. */
function hasExoticNumbers(v: unknown, depth = 0): boolean {
  if (typeof v === "bigint" || isLosslessNumber(v)) return true;
  if (typeof v !== "object" || v === null || depth > 200) return false;
  if (Array.isArray(v)) return v.some((x) => hasExoticNumbers(x, depth + 1));
  for (const x of Object.values(v)) if (hasExoticNumbers(x, depth + 1)) return true;
  return false;
}

function toPlainNumbers(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (isLosslessNumber(v)) return Number(v.value);
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map(toPlainNumbers);
  // fromEntries defines own properties: a "__proto__" key stays data, never a prototype.
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toPlainNumbers(x)]));
}

/** The JSON type name of a value, as a sender would say it. */
function jsonTypeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "bigint" || isLosslessNumber(v)) return "integer";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** The value at a JSON Pointer (Ajv's instancePath) inside `root`. */
function valueAt(root: unknown, path: string): unknown {
  let v = root;
  for (const raw of path.split("/").slice(1)) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    v = typeof v === "object" && v !== null ? (v as Record<string, unknown>)[key] : undefined;
  }
  return v;
}

function describeAjvError(e: ErrorObject, data: unknown): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "type":
      return `expected type ${String(p.type).replaceAll(",", " or ")}, found ${jsonTypeOf(valueAt(data, e.instancePath))}`;
    case "required":
      return `required property ${JSON.stringify(p.missingProperty)} is missing`;
    case "additionalProperties":
      return `property ${JSON.stringify(p.additionalProperty)} is not allowed (additionalProperties: false)`;
    case "enum":
      return `must be one of ${JSON.stringify(p.allowedValues)}`;
    default:
      return e.message ?? e.keyword;
  }
}

/** Validate a batch for the loader. Throws BatchValidationError listing every problem. */
export function checkBatch(input: unknown, options: ValidateOptions = {}): ValidatedBatch {
  const maxIssues = options.maxIssues ?? 1000;
  const issues: ValidationIssue[] = [];
  const problem = (index: number | null, path: string, message: string) => {
    if (issues.length < maxIssues) issues.push({ index, path, message });
  };

  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new BatchValidationError([
      {
        index: null,
        path: "",
        message: `a batch must be a JSON object, got ${Array.isArray(input) ? "an array" : input === null ? "null" : typeof input}`,
      },
    ]);
  }
  const batch = input as Record<string, unknown>;
  for (const key of Object.keys(batch)) {
    if (!ALLOWED_TOP_LEVEL.has(key))
      problem(null, pointer(key), `unknown field ${JSON.stringify(key)} (allowed: ${[...ALLOWED_TOP_LEVEL].join(", ")})`);
  }

  const tableName = batch.table_name;
  const tableProblem = tableName === undefined ? "table_name is required" : identifierProblem(tableName, "table_name");
  if (tableProblem) problem(null, "/table_name", tableProblem);
  const table = typeof tableName === "string" ? tableName : "";

  // Schema and columns.
  const columns = new Map<string, ColumnType>();
  const schema = batch.schema;
  let properties: Record<string, unknown> = {};
  let schemaOk = false;
  let propertiesOk = false;
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    problem(null, "/schema", schema === undefined ? "schema is required" : "schema must be a JSON Schema object");
  } else if (
    typeof (schema as JsonSchema).properties !== "object" ||
    (schema as JsonSchema).properties === null ||
    Array.isArray((schema as JsonSchema).properties)
  ) {
    problem(null, "/schema/properties", "schema.properties is required and must be an object (one entry per column)");
  } else {
    schemaOk = true;
    propertiesOk = true;
    properties = (schema as JsonSchema).properties as Record<string, unknown>;
    for (const [name, propSchema] of Object.entries(properties)) {
      const path = pointer("schema", "properties", name);
      const nameProblem = identifierProblem(name, "property name");
      if (nameProblem) {
        problem(null, path, nameProblem);
        schemaOk = false;
        continue;
      }
      if (PG_SYSTEM.has(name)) {
        problem(
          null,
          path,
          `property ${JSON.stringify(name)} is the name of a PostgreSQL system column (${POSTGRES_SYSTEM_COLUMNS.join(", ")}); rename it`,
        );
        schemaOk = false;
        continue;
      }
      if (SYSTEM.has(name)) {
        problem(
          null,
          path,
          `property ${JSON.stringify(name)} collides with a seqload system column (${SYSTEM_COLUMNS.join(", ")}); rename it`,
        );
        schemaOk = false;
        continue;
      }
      const r = columnTypeForSchema(propSchema);
      if ("problem" in r) {
        problem(null, path, `invalid JSON schema: ${r.problem}`);
        schemaOk = false;
      } else if (r.type !== null) {
        columns.set(name, r.type);
      }
    }
  }
  if (columns.size + SYSTEM_COLUMNS.length > MAX_COLUMNS) {
    problem(
      null,
      "/schema/properties",
      `the schema has ${columns.size} typed properties; a PostgreSQL table holds at most ${MAX_COLUMNS} columns including seqload's ${SYSTEM_COLUMNS.length}`,
    );
    schemaOk = false;
  }
  let validateData: ValidateFunction | null = null;
  if (schemaOk) {
    try {
      validateData = compileSchema(schema as JsonSchema);
    } catch (e) {
      problem(null, "/schema", `invalid JSON schema: ${(e as Error).message}`);
    }
  }

  // Keys.
  let keyNames: string[] = [];
  if (batch.key_names !== undefined && batch.key_names !== null) {
    if (!Array.isArray(batch.key_names) || !batch.key_names.every((k) => typeof k === "string")) {
      problem(null, "/key_names", "key_names must be an array of property names");
    } else {
      keyNames = batch.key_names;
      const seen = new Set<string>();
      keyNames.forEach((k, i) => {
        if (seen.has(k)) problem(null, pointer("key_names", i), `key ${JSON.stringify(k)} is listed twice`);
        seen.add(k);
        if (propertiesOk && !Object.hasOwn(properties, k))
          problem(null, pointer("key_names", i), `key ${JSON.stringify(k)} is not a property of schema.properties`);
        const t = columns.get(k);
        if (t === "jsonb")
          problem(
            null,
            pointer("schema", "properties", k),
            `key ${JSON.stringify(k)} must be a scalar (integer, number, string, boolean, date-time or date), not an object, array or untyped value`,
          );
        if (
          propertiesOk &&
          Object.hasOwn(properties, k) &&
          t === undefined &&
          !issues.some((i) => i.path === pointer("schema", "properties", k))
        )
          problem(null, pointer("schema", "properties", k), `key ${JSON.stringify(k)} can only be null; a key needs a non-null type`);
      });
    }
  }

  // table_version.
  let tableVersion: bigint | null = null;
  if (batch.table_version !== undefined && batch.table_version !== null) {
    const v = parseSequence(batch.table_version);
    if (typeof v === "string") problem(null, "/table_version", `table_version ${v}`);
    else tableVersion = v;
  }
  if (batch.bookmark_names !== undefined && !Array.isArray(batch.bookmark_names))
    problem(null, "/bookmark_names", "bookmark_names must be an array");

  // Messages.
  const messages: ValidatedMessage[] = [];
  const rawMessages = batch.messages;
  if (!Array.isArray(rawMessages)) {
    problem(null, "/messages", rawMessages === undefined ? "messages is required" : "messages must be an array");
  } else if (rawMessages.length === 0) {
    problem(null, "/messages", "messages is empty; a batch carries at least one message");
  } else if (options.maxMessages !== undefined && rawMessages.length > options.maxMessages) {
    problem(null, "/messages", `the batch has ${rawMessages.length} messages; at most ${options.maxMessages} are accepted`);
  } else {
    const dateColumns: [string, "timestamptz" | "date"][] = [];
    const intColumns: string[] = [];
    for (const [name, t] of columns) {
      if (t === "timestamptz" || t === "date") dateColumns.push([name, t]);
      if (t === "bigint") intColumns.push(name);
    }
    for (let index = 0; index < rawMessages.length; index++) {
      if (issues.length >= maxIssues) break;
      const m = rawMessages[index] as unknown;
      const base = `/messages/${index}`; // an index needs no JSON Pointer escaping
      if (typeof m !== "object" || m === null || Array.isArray(m)) {
        problem(index, base, "a message must be an object");
        continue;
      }
      const msg = m as Record<string, unknown>;
      for (const key of Object.keys(msg)) {
        if (!ALLOWED_MESSAGE_FIELDS.has(key)) problem(index, `${base}${pointer(key)}`, `unknown message field ${JSON.stringify(key)}`);
      }
      const action = msg.action;
      if (typeof action !== "string" || !ACTIONS.has(action)) {
        problem(
          index,
          `${base}/action`,
          action === undefined
            ? "action is missing"
            : `unknown action ${JSON.stringify(action)} (expected "upsert", "delete" or "activate_version")`,
        );
      }
      const seq = parseSequence(msg.sequence);
      if (typeof seq === "string") problem(index, `${base}/sequence`, `sequence ${seq}`);
      if (action === "activate_version") {
        if (tableVersion === null) problem(index, `${base}/action`, "activate_version needs the batch's table_version");
        if (msg.data !== undefined && msg.data !== null) problem(index, `${base}/data`, "activate_version carries no data");
        if (typeof seq !== "string") messages.push({ index, action: "activate_version", sequence: seq, data: undefined });
        continue;
      }
      const data = msg.data;
      if (typeof data !== "object" || data === null || Array.isArray(data)) {
        problem(index, `${base}/data`, data === undefined ? "data is missing" : "data must be an object");
        continue;
      }
      const record = data as Record<string, unknown>;
      if (action === "delete" && keyNames.length === 0) {
        problem(index, `${base}/action`, "delete needs key_names: an append-only table has no row to delete");
      }
      for (const k of keyNames) {
        const v = record[k];
        if (v === undefined || v === null)
          problem(index, `${base}/data${pointer(k)}`, `key property ${JSON.stringify(k)} is ${v === null ? "null" : "missing"}`);
      }
      // Values Ajv cannot judge: non-finite numbers, NUL in text, date-time/date syntax, int64 range.
      checkValues(record, index, `${base}/data`, problem, columns, dateColumns, intColumns, action === "delete" ? new Set(keyNames) : null);
      if (action === "delete" && schemaOk) {
        for (const k of keyNames) {
          const v = record[k];
          if (v === undefined || v === null) continue;
          const check = compileProperty(properties[k]);
          if (check !== null && !check(hasExoticNumbers(v) ? toPlainNumbers(v) : v)) {
            for (const e of check.errors ?? [])
              problem(index, `${base}/data${pointer(k)}${e.instancePath}`, `does not conform to the schema: ${describeAjvError(e, v)}`);
          }
        }
      }
      if (validateData !== null && action === "upsert") {
        const view = hasExoticNumbers(record) ? toPlainNumbers(record) : record;
        if (!validateData(view)) {
          for (const e of validateData.errors ?? []) {
            problem(index, `${base}/data${e.instancePath}`, `does not conform to the schema: ${describeAjvError(e, view)}`);
          }
        }
      }
      if (typeof seq !== "string" && (action === "upsert" || action === "delete")) {
        messages.push({ index, action, sequence: seq, data: record });
      }
    }
  }

  if (issues.length > 0) throw new BatchValidationError(issues, table || null);
  return { table, keyNames, columns, messages, tableVersion };
}

function checkValues(
  record: Record<string, unknown>,
  index: number,
  base: string,
  problem: (index: number, path: string, message: string) => void,
  columns: Map<string, ColumnType>,
  dateColumns: [string, "timestamptz" | "date"][],
  intColumns: string[],
  onlyKeysOf: Set<string> | null,
): void {
  for (const [name, v] of Object.entries(record)) {
    if (v === null || v === undefined) continue;
    if (onlyKeysOf !== null && !onlyKeysOf.has(name) && !columns.has(name)) continue;
    if (typeof v === "string") {
      if (v.includes("\0")) problem(index, `${base}${pointer(name)}`, "text contains U+0000 (NUL), which PostgreSQL cannot store");
      else if (!v.isWellFormed())
        problem(
          index,
          `${base}${pointer(name)}`,
          "text contains a lone UTF-16 surrogate (not valid Unicode), which PostgreSQL cannot store as UTF-8",
        );
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) problem(index, `${base}${pointer(name)}`, `${v} is not a JSON number`);
    } else if (isLosslessNumber(v)) {
      const range = numericRangeProblem(v);
      if (range !== null) problem(index, `${base}${pointer(name)}`, range);
    } else if (typeof v === "object") {
      const t = columns.get(name);
      if (t === "jsonb" || t === undefined) {
        let text: string;
        try {
          text = jsonText(v);
        } catch (e) {
          problem(index, `${base}${pointer(name)}`, `cannot be serialised as JSON: ${(e as Error).message}`);
          continue;
        }
        if (text.length > 2 * MAX_JSON_DEPTH && jsonDepthExceeds(v, MAX_JSON_DEPTH)) {
          problem(index, `${base}${pointer(name)}`, `is nested more than ${MAX_JSON_DEPTH} levels deep`);
          continue;
        }
        if (LONE_SURROGATE_ESCAPE.test(text))
          problem(
            index,
            `${base}${pointer(name)}`,
            "contains a lone UTF-16 surrogate (not valid Unicode), which PostgreSQL jsonb cannot store",
          );
        if (hasExoticNumbers(v)) {
          const range = firstNumericRangeProblem(v);
          if (range !== null) problem(index, `${base}${pointer(name)}`, range);
        }
        if (text.includes("\\u0000"))
          problem(index, `${base}${pointer(name)}`, "contains U+0000 (NUL), which PostgreSQL jsonb cannot store");
        if (/\b(NaN|Infinity)\b/.test(text) && containsNonFinite(v))
          problem(index, `${base}${pointer(name)}`, "contains NaN or Infinity, which are not JSON numbers");
      }
    }
  }
  for (const [name, type] of dateColumns) {
    const v = record[name];
    if (typeof v !== "string") continue;
    const p = type === "date" ? dateProblem(v) : dateTimeProblem(v);
    if (p !== null) problem(index, `${base}${pointer(name)}`, p);
  }
  for (const name of intColumns) {
    const v = record[name];
    if (typeof v === "number" && Number.isSafeInteger(v)) continue; // the common case, decided cheaply
    if (v !== undefined && v !== null && isNumeric(v) && exactInteger(v) === null) {
      problem(index, `${base}${pointer(name)}`, `${typeof v === "object" ? v.value : String(v)} is not an integer`);
      continue;
    }
    if (v !== undefined && v !== null && isNumeric(v) && !fitsInt64(v)) {
      // An integer beyond int64: stored exactly in a numeric column instead (see plan).
      columns.set(name, "numeric");
    }
  }
}

// JSON.stringify writes surrogate pairs as characters and lone surrogates as \udXXX escapes; an odd
// run of backslashes before "u" marks a real escape, not an escaped backslash followed by "u".
const LONE_SURROGATE_ESCAPE = /(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}/;

function firstNumericRangeProblem(v: unknown, depth = 0): string | null {
  if (isLosslessNumber(v)) return numericRangeProblem(v);
  if (typeof v !== "object" || v === null || depth > 1000) return null;
  for (const x of Object.values(v)) {
    const p = firstNumericRangeProblem(x, depth + 1);
    if (p !== null) return p;
  }
  return null;
}

/** Iterative, so that a hostile depth cannot overflow the stack here. */
function jsonDepthExceeds(root: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== "object" || v === null) continue;
    if (depth > limit) return true;
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) stack.push([x, depth + 1]);
  }
  return false;
}

function containsNonFinite(v: unknown): boolean {
  if (typeof v === "number") return !Number.isFinite(v);
  if (typeof v !== "object" || v === null) return false;
  return Object.values(v).some(containsNonFinite);
}

/**
 * Check a batch without a database. Throws BatchValidationError listing every problem (with
 * message index and JSON path); returns a summary when the batch is valid.
 */
export function validateBatch(batch: unknown, options: ValidateOptions = {}): BatchSummary {
  const v = checkBatch(batch, options);
  return { table: v.table, keyNames: v.keyNames, received: v.messages.length, columns: Object.fromEntries(v.columns) };
}
