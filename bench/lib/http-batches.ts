/**
 * The batches the HTTP benches send (bench/http.ts, bench/http-phases.ts): 5 columns, target-stitch
 * like 19-digit sequences increasing across the whole run, keys drawn from 10 batches' worth so
 * that most messages update an existing row. As JSON text for a POST, or as the object a library
 * caller would hold.
 */
const TABLE_SCHEMA = {
  properties: {
    id: { type: "integer" },
    name: { type: ["null", "string"] },
    amount: { type: ["null", "number"] },
    active: { type: ["null", "boolean"] },
    updated_at: { type: ["null", "string"], format: "date-time" },
  },
};

let sequence = 1_795_465_705_836_000_000n;
const keyFor = (batchSize: number) => Math.floor(Math.random() * batchSize * 10);
const SCHEMA_TEXT = JSON.stringify(TABLE_SCHEMA);

/** A batch of `batchSize` messages as the JSON body of a POST. */
export function batchText(table: string, batchSize: number): string {
  const parts = new Array<string>(batchSize);
  for (let i = 0; i < batchSize; i++) {
    const id = keyFor(batchSize);
    sequence += 1n;
    parts[i] =
      `{"action":"upsert","sequence":${sequence},"data":{"id":${id},"name":"name ${id}","amount":${(id % 997) / 10},"active":${id % 2 === 0},"updated_at":"2019-11-26T22:29:16Z"}}`;
  }
  return `{"table_name":"${table}","key_names":["id"],"schema":${SCHEMA_TEXT},"messages":[${parts.join(",")}]}`;
}

/** The same kind of batch as an object (sequences as bigint). */
export function batchObject(table: string, batchSize: number) {
  const messages = new Array<unknown>(batchSize);
  for (let i = 0; i < batchSize; i++) {
    const id = keyFor(batchSize);
    sequence += 1n;
    messages[i] = {
      action: "upsert",
      sequence,
      data: { id, name: `name ${id}`, amount: (id % 997) / 10, active: id % 2 === 0, updated_at: "2019-11-26T22:29:16Z" },
    };
  }
  return { table_name: table, key_names: ["id"], schema: TABLE_SCHEMA, messages };
}
