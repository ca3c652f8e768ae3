/**
 * Step 1 of the data path: check a batch completely before anything touches the database, and
 * report every problem at once with its message index and JSON path.
 */
import AjvDraft04Module from "ajv-draft-04";
import type { ErrorObject, ValidateFunction } from "ajv-draft-04";
import { isLosslessNumber } from "lossless-json";
import { RE2JS } from "re2js";
import { type ColumnType, SYSTEM_COLUMN_NAMES, columnTypeForSchema } from "./columns.js";
import { BatchValidationError, SCHEMA_MISMATCH, type ValidationIssue, type ValidationIssueKind, validationIssue } from "./errors.js";
import { POSTGRES_SYSTEM_COLUMNS, identifierProblem } from "./identifiers.js";
import { batchColumns } from "./plan.js";
import { type OnInvalid, type RejectedRow, rejectedRows } from "./quarantine.js";
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
  /** Column type per property, as the schema says, in schema order; null-only properties are left out. */
  columns: Map<string, ColumnType>;
  /** Integer properties with a value beyond int64 in this batch (planning stores them as numeric). */
  beyondInt64: Set<string>;
  messages: ValidatedMessage[];
  tableVersion: bigint | null;
  /** Invalid messages set aside for seqload.rejected (quarantine mode; always empty otherwise). */
  rejected: RejectedRow[];
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
const SYSTEM = new Set<string>(SYSTEM_COLUMN_NAMES);
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
  /**
   * "fail" (default): any problem rejects the batch. "quarantine": a batch whose only problems are
   * those of single messages is valid; those messages come back in `rejected` instead.
   */
  onInvalid?: OnInvalid;
}

/** Problems kept per message in quarantine mode (every message is checked there, however many fail). */
const MAX_ISSUES_PER_MESSAGE = 100;

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

/**
 * Collects the problems of one batch, up to a limit. In quarantine mode every message must be
 * checked: the limit then applies to the batch's own problems, and each message keeps at most
 * MAX_ISSUES_PER_MESSAGE.
 */
class Problems {
  readonly issues: ValidationIssue[] = [];
  /** Problems of the batch as a whole (index null). */
  batchCount = 0;
  private lastIndex = -1;
  private lastCount = 0;
  constructor(
    readonly max: number,
    readonly quarantine: boolean,
  ) {}
  get full(): boolean {
    return this.quarantine ? this.batchCount >= this.max : this.issues.length >= this.max;
  }
  add(kind: ValidationIssueKind, index: number | null, path: string, message: string): void {
    if (this.quarantine && index !== null) {
      if (index !== this.lastIndex) {
        this.lastIndex = index;
        this.lastCount = 0;
      }
      if (this.lastCount >= MAX_ISSUES_PER_MESSAGE) return;
      this.lastCount++;
      this.issues.push(validationIssue(kind, index, path, message));
      return;
    }
    if (this.full) return;
    if (index === null) this.batchCount++;
    this.issues.push(validationIssue(kind, index, path, message));
  }
  batch(path: string, message: string): void {
    this.add("batch", null, path, message);
  }
}

/** What the schema says: typed columns, the raw properties, and the compiled record validator. */
interface SchemaFacts {
  columns: Map<string, ColumnType>;
  properties: Record<string, unknown>;
  /** schema.properties is an object (key_names can be checked against it). */
  propertiesOk: boolean;
  /** Every property is usable (records can be checked against the schema). */
  schemaOk: boolean;
  validateData: ValidateFunction | null;
}

/** What checking one message needs to know about the batch. */
interface MessageRules {
  schema: SchemaFacts;
  keyNames: string[];
  tableVersion: bigint | null;
  dateColumns: [string, "timestamptz" | "date"][];
  intColumns: string[];
  /** Integer columns holding a value beyond int64 (planning makes them numeric). */
  beyondInt64: Set<string>;
  /** Such columns of the message being checked: they count only if the message is valid. */
  messageBeyondInt64: string[];
}

/**
 * Refuse a batch with more than `maxMessages` messages before anything else is checked, so that
 * an over-long batch costs no validation of its records (the HTTP server's 20,000 limit).
 */
export function checkMessageCount(input: unknown, maxMessages: number): void {
  const batch = typeof input === "object" && input !== null ? (input as { table_name?: unknown; messages?: unknown }) : {};
  if (!Array.isArray(batch.messages) || batch.messages.length <= maxMessages) return;
  const message = `the batch has ${batch.messages.length} messages; at most ${maxMessages} are accepted`;
  throw new BatchValidationError(
    [validationIssue("batch", null, "/messages", message)],
    typeof batch.table_name === "string" ? batch.table_name : null,
  );
}

/** Validate a batch for the loader. Throws BatchValidationError listing every problem. */
export function checkBatch(input: unknown, options: ValidateOptions = {}): ValidatedBatch {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    const got = Array.isArray(input) ? "an array" : input === null ? "null" : typeof input;
    throw new BatchValidationError([validationIssue("batch", null, "", `a batch must be a JSON object, got ${got}`)]);
  }
  const batch = input as Record<string, unknown>;
  const quarantine = (options.onInvalid ?? "fail") === "quarantine";
  const problems = new Problems(options.maxIssues ?? 1000, quarantine);
  const table = checkEnvelope(batch, problems);
  const schema = checkSchema(batch.schema, problems);
  const keyNames = checkKeys(batch.key_names, schema, problems);
  let tableVersion: bigint | null = null;
  if (batch.table_version !== undefined && batch.table_version !== null) {
    const v = parseSequence(batch.table_version);
    if (typeof v === "string") problems.batch("/table_version", `table_version ${v}`);
    else tableVersion = v;
  }
  if (batch.bookmark_names !== undefined && !Array.isArray(batch.bookmark_names)) {
    problems.batch("/bookmark_names", "bookmark_names must be an array");
  }
  const rules: MessageRules = {
    schema,
    keyNames,
    tableVersion,
    ...typedColumns(schema.columns),
    beyondInt64: new Set(),
    messageBeyondInt64: [],
  };
  let messages = checkMessages(batch.messages, rules, options, problems);
  let rejected: RejectedRow[] = [];
  if (problems.issues.length > 0) {
    // Problems of the batch as a whole reject it whole, in either mode.
    if (!quarantine || problems.batchCount > 0) throw new BatchValidationError(problems.issues.slice(0, problems.max), table || null);
    const invalid = new Set(problems.issues.map((i) => i.index));
    messages = messages.filter((m) => !invalid.has(m.index));
    rejected = rejectedRows(batch.messages as unknown[], problems.issues, table);
  }
  return { table, keyNames, columns: schema.columns, beyondInt64: rules.beyondInt64, messages, tableVersion, rejected };
}

/** Unknown top-level fields and the table name. Returns the table name ("" when unusable). */
function checkEnvelope(batch: Record<string, unknown>, problems: Problems): string {
  for (const key of Object.keys(batch)) {
    if (!ALLOWED_TOP_LEVEL.has(key)) {
      problems.batch(pointer(key), `unknown field ${JSON.stringify(key)} (allowed: ${[...ALLOWED_TOP_LEVEL].join(", ")})`);
    }
  }
  const tableName = batch.table_name;
  const tableProblem = tableName === undefined ? "table_name is required" : identifierProblem(tableName, "table_name");
  if (tableProblem) problems.batch("/table_name", tableProblem);
  return typeof tableName === "string" ? tableName : "";
}

/** The schema: one column per typed property, names checked, and the compiled validator for records. */
function checkSchema(schema: unknown, problems: Problems): SchemaFacts {
  const facts: SchemaFacts = { columns: new Map(), properties: {}, propertiesOk: false, schemaOk: false, validateData: null };
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
    problems.batch("/schema", schema === undefined ? "schema is required" : "schema must be a JSON Schema object");
    return facts;
  }
  const properties = (schema as JsonSchema).properties;
  if (typeof properties !== "object" || properties === null || Array.isArray(properties)) {
    problems.batch("/schema/properties", "schema.properties is required and must be an object (one entry per column)");
    return facts;
  }
  facts.propertiesOk = true;
  facts.schemaOk = true;
  facts.properties = properties;
  for (const [name, propSchema] of Object.entries(facts.properties)) {
    const problem = propertyProblem(name, propSchema, facts.columns);
    if (problem !== null) {
      problems.batch(pointer("schema", "properties", name), problem);
      facts.schemaOk = false;
    }
  }
  if (facts.columns.size + SYSTEM_COLUMN_NAMES.length > MAX_COLUMNS) {
    problems.batch(
      "/schema/properties",
      `the schema has ${facts.columns.size} typed properties; a PostgreSQL table holds at most ${MAX_COLUMNS} columns including seqload's ${SYSTEM_COLUMN_NAMES.length}`,
    );
    facts.schemaOk = false;
  }
  if (facts.schemaOk) {
    try {
      facts.validateData = compileSchema(schema as JsonSchema);
    } catch (e) {
      problems.batch("/schema", `invalid JSON schema: ${(e as Error).message}`);
    }
  }
  return facts;
}

/** Why property `name` cannot be a column, or null (its type, if any, is added to `columns`). */
function propertyProblem(name: string, propSchema: unknown, columns: Map<string, ColumnType>): string | null {
  const nameProblem = identifierProblem(name, "property name");
  if (nameProblem) return nameProblem;
  if (PG_SYSTEM.has(name)) {
    return `property ${JSON.stringify(name)} is the name of a PostgreSQL system column (${POSTGRES_SYSTEM_COLUMNS.join(", ")}); rename it`;
  }
  if (SYSTEM.has(name)) {
    return `property ${JSON.stringify(name)} collides with a seqload system column (${SYSTEM_COLUMN_NAMES.join(", ")}); rename it`;
  }
  const r = columnTypeForSchema(propSchema);
  if ("problem" in r) return `invalid JSON schema: ${r.problem}`;
  if (r.type !== null) columns.set(name, r.type);
  return null;
}

function checkKeys(raw: unknown, schema: SchemaFacts, problems: Problems): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw) || !raw.every((k) => typeof k === "string")) {
    problems.batch("/key_names", "key_names must be an array of property names");
    return [];
  }
  const keyNames = raw;
  const { properties, propertiesOk, columns } = schema;
  const seen = new Set<string>();
  keyNames.forEach((k, i) => {
    const name = JSON.stringify(k);
    if (seen.has(k)) problems.batch(pointer("key_names", i), `key ${name} is listed twice`);
    seen.add(k);
    if (propertiesOk && !Object.hasOwn(properties, k))
      problems.batch(pointer("key_names", i), `key ${name} is not a property of schema.properties`);
    const t = columns.get(k);
    const at = pointer("schema", "properties", k);
    if (t === "jsonb") {
      problems.batch(
        at,
        `key ${name} must be a scalar (integer, number, string, boolean, date-time or date), not an object, array or untyped value`,
      );
    }
    if (propertiesOk && Object.hasOwn(properties, k) && t === undefined && !problems.issues.some((i) => i.path === at)) {
      problems.batch(at, `key ${name} can only be null; a key needs a non-null type`);
    }
  });
  return keyNames;
}

function typedColumns(columns: Map<string, ColumnType>): Pick<MessageRules, "dateColumns" | "intColumns"> {
  const dateColumns: [string, "timestamptz" | "date"][] = [];
  const intColumns: string[] = [];
  for (const [name, t] of columns) {
    if (t === "timestamptz" || t === "date") dateColumns.push([name, t]);
    if (t === "bigint") intColumns.push(name);
  }
  return { dateColumns, intColumns };
}

function checkMessages(raw: unknown, rules: MessageRules, options: ValidateOptions, problems: Problems): ValidatedMessage[] {
  const messages: ValidatedMessage[] = [];
  if (!Array.isArray(raw)) {
    problems.batch("/messages", raw === undefined ? "messages is required" : "messages must be an array");
  } else if (raw.length === 0) {
    problems.batch("/messages", "messages is empty; a batch carries at least one message");
  } else if (options.maxMessages !== undefined && raw.length > options.maxMessages) {
    problems.batch("/messages", `the batch has ${raw.length} messages; at most ${options.maxMessages} are accepted`);
  } else {
    for (let index = 0; index < raw.length && !problems.full; index++) {
      const before = problems.issues.length;
      const m = checkMessage(raw[index] as unknown, index, rules, problems);
      if (m !== null) messages.push(m);
      // An integer beyond int64 widens its column only when its message is loaded.
      if (problems.issues.length === before) for (const name of rules.messageBeyondInt64) rules.beyondInt64.add(name);
      rules.messageBeyondInt64.length = 0;
    }
  }
  return messages;
}

/** One message: its fields, then its record. Returns it validated, or null when it cannot be used. */
function checkMessage(m: unknown, index: number, rules: MessageRules, problems: Problems): ValidatedMessage | null {
  const base = `/messages/${index}`; // an index needs no JSON Pointer escaping
  if (typeof m !== "object" || m === null || Array.isArray(m)) {
    problems.add("message", index, base, "a message must be an object");
    return null;
  }
  const msg = m as Record<string, unknown>;
  for (const key of Object.keys(msg)) {
    if (!ALLOWED_MESSAGE_FIELDS.has(key))
      problems.add("message", index, `${base}${pointer(key)}`, `unknown message field ${JSON.stringify(key)}`);
  }
  const action = msg.action;
  if (typeof action !== "string" || !ACTIONS.has(action)) {
    const what =
      action === undefined
        ? "action is missing"
        : `unknown action ${JSON.stringify(action)} (expected "upsert", "delete" or "activate_version")`;
    problems.add("message", index, `${base}/action`, what);
  }
  const seq = parseSequence(msg.sequence);
  if (typeof seq === "string") problems.add("message", index, `${base}/sequence`, `sequence ${seq}`);
  if (action === "activate_version") {
    if (rules.tableVersion === null) problems.add("message", index, `${base}/action`, "activate_version needs the batch's table_version");
    if (msg.data !== undefined && msg.data !== null) problems.add("data", index, `${base}/data`, "activate_version carries no data");
    return typeof seq === "string" ? null : { index, action: "activate_version", sequence: seq, data: undefined };
  }
  const data = msg.data;
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    problems.add("data", index, `${base}/data`, data === undefined ? "data is missing" : "data must be an object");
    return null;
  }
  const record = data as Record<string, unknown>;
  checkRecord(record, action, index, rules, problems);
  if (typeof seq === "string" || (action !== "upsert" && action !== "delete")) return null;
  return { index, action, sequence: seq, data: record };
}

/** A message's record: its key, the values PostgreSQL must be able to store, and the schema. */
function checkRecord(record: Record<string, unknown>, action: unknown, index: number, rules: MessageRules, problems: Problems): void {
  const base = `/messages/${index}/data`;
  const { keyNames, schema } = rules;
  if (action === "delete" && keyNames.length === 0) {
    problems.add("message", index, `/messages/${index}/action`, "delete needs key_names: an append-only table has no row to delete");
  }
  for (const k of keyNames) {
    const v = record[k];
    if (v === undefined || v === null) {
      problems.add(
        v === null ? "key_null" : "key_missing",
        index,
        `${base}${pointer(k)}`,
        `key property ${JSON.stringify(k)} is ${v === null ? "null" : "missing"}`,
      );
    }
  }
  // Values Ajv cannot judge: non-finite numbers, NUL in text, date-time/date syntax, int64 range.
  checkValues(record, index, base, rules, action === "delete" ? new Set(keyNames) : null, problems);
  if (action === "delete" && schema.schemaOk) {
    // A delete carries only its key: check just the key properties against their schemas.
    for (const k of keyNames) {
      const v = record[k];
      if (v === undefined || v === null) continue;
      const check = compileProperty(schema.properties[k]);
      if (check !== null && !check(hasExoticNumbers(v) ? toPlainNumbers(v) : v)) {
        for (const e of check.errors ?? []) {
          problems.add("schema", index, `${base}${pointer(k)}${e.instancePath}`, `${SCHEMA_MISMATCH}${describeAjvError(e, v)}`);
        }
      }
    }
  }
  if (schema.validateData !== null && action === "upsert") {
    const view = hasExoticNumbers(record) ? toPlainNumbers(record) : record;
    if (!schema.validateData(view)) {
      for (const e of schema.validateData.errors ?? []) {
        problems.add("schema", index, `${base}${e.instancePath}`, `${SCHEMA_MISMATCH}${describeAjvError(e, view)}`);
      }
    }
  }
}

function checkValues(
  record: Record<string, unknown>,
  index: number,
  base: string,
  rules: MessageRules,
  onlyKeysOf: Set<string> | null,
  problems: Problems,
): void {
  const columns = rules.schema.columns;
  const problem = (name: string, message: string) => problems.add("data", index, `${base}${pointer(name)}`, message);
  for (const [name, v] of Object.entries(record)) {
    if (v === null || v === undefined) continue;
    if (onlyKeysOf !== null && !onlyKeysOf.has(name) && !columns.has(name)) continue;
    const found = valueProblem(v, columns, name);
    if (found !== null) for (const message of found) problem(name, message);
  }
  for (const [name, type] of rules.dateColumns) {
    const v = record[name];
    if (typeof v !== "string") continue;
    const p = type === "date" ? dateProblem(v) : dateTimeProblem(v);
    if (p !== null) problem(name, p);
  }
  for (const name of rules.intColumns) {
    const v = record[name];
    if (typeof v === "number" && Number.isSafeInteger(v)) continue; // the common case, decided cheaply
    if (v === undefined || v === null || !isNumeric(v)) continue;
    if (exactInteger(v) === null) problem(name, `${typeof v === "object" ? v.value : String(v)} is not an integer`);
    else if (!fitsInt64(v)) rules.messageBeyondInt64.push(name); // stored exactly in a numeric column instead (plan.ts)
  }
}

/** What PostgreSQL could not store about the non-null value of property `name`, or null. */
function valueProblem(v: unknown, columns: Map<string, ColumnType>, name: string): string[] | null {
  if (typeof v === "string") {
    if (v.includes("\0")) return ["text contains U+0000 (NUL), which PostgreSQL cannot store"];
    if (!v.isWellFormed()) return ["text contains a lone UTF-16 surrogate (not valid Unicode), which PostgreSQL cannot store as UTF-8"];
    return null;
  }
  if (typeof v === "number") return Number.isFinite(v) ? null : [`${v} is not a JSON number`];
  if (isLosslessNumber(v)) {
    const range = numericRangeProblem(v);
    return range === null ? null : [range];
  }
  if (typeof v !== "object") return null;
  const type = columns.get(name);
  if (type === "jsonb" || type === undefined) return jsonProblems(v as object);
  return null;
}

/** What jsonb could not store about an object or array value. */
function jsonProblems(v: object): string[] | null {
  let text: string;
  try {
    text = jsonText(v);
  } catch (e) {
    return [`cannot be serialised as JSON: ${(e as Error).message}`];
  }
  if (text.length > 2 * MAX_JSON_DEPTH && jsonDepthExceeds(v, MAX_JSON_DEPTH)) return [`is nested more than ${MAX_JSON_DEPTH} levels deep`];
  const found: string[] = [];
  if (LONE_SURROGATE_ESCAPE.test(text))
    found.push("contains a lone UTF-16 surrogate (not valid Unicode), which PostgreSQL jsonb cannot store");
  if (hasExoticNumbers(v)) {
    const range = firstNumericRangeProblem(v);
    if (range !== null) found.push(range);
  }
  if (text.includes("\\u0000")) found.push("contains U+0000 (NUL), which PostgreSQL jsonb cannot store");
  if (/\b(NaN|Infinity)\b/.test(text) && containsNonFinite(v)) found.push("contains NaN or Infinity, which are not JSON numbers");
  return found.length > 0 ? found : null;
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
  return {
    table: v.table,
    keyNames: v.keyNames,
    received: v.messages.length + v.rejected.length,
    columns: Object.fromEntries(batchColumns(v)),
  };
}
