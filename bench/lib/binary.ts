/**
 * COPY BINARY encoding of the bench shape, for the text-versus-binary experiment in phases.ts:
 * int8, text, int8, numeric, bool, timestamptz, int8 (_sequence) and optionally a trailing bool.
 * Written for this one shape; a general encoder would dispatch on the column types the same way.
 */
import type { BenchMessage } from "./data.js";

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1");
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

/** The 19-byte file header: signature, flags 0, header extension length 0. */
function binaryHeader(): Buffer {
  const b = Buffer.alloc(19);
  SIGNATURE.copy(b, 0);
  return b;
}

/** The trailer: a field count of -1. */
function binaryTrailer(): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(-1, 0);
  return b;
}

/** numeric's binary form of a plain decimal string ("-12.5"): base-10000 digits, weight, sign, dscale. */
function numericBinary(text: string): Buffer {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text);
  if (m === null) throw new Error(`numericBinary: unsupported number text ${text}`);
  const negative = m[1] === "-";
  const intPart = (m[2] ?? "").replace(/^0+/, "");
  const fracPart = m[3] ?? "";
  const dscale = fracPart.length;
  // Align to base-10000 groups around the decimal point.
  const intPadded = "0".repeat((4 - (intPart.length % 4)) % 4) + intPart;
  const fracPadded = fracPart + "0".repeat((4 - (fracPart.length % 4)) % 4);
  const groups: number[] = [];
  for (let i = 0; i < intPadded.length; i += 4) groups.push(Number(intPadded.slice(i, i + 4)));
  const intGroups = groups.length;
  for (let i = 0; i < fracPadded.length; i += 4) groups.push(Number(fracPadded.slice(i, i + 4)));
  let weight = intGroups - 1;
  let start = 0;
  while (start < groups.length && groups[start] === 0) {
    start++;
    weight--;
  }
  let end = groups.length;
  while (end > start && groups[end - 1] === 0) end--;
  const digits = groups.slice(start, end);
  const b = Buffer.alloc(8 + 2 * digits.length);
  b.writeInt16BE(digits.length, 0);
  b.writeInt16BE(digits.length === 0 ? 0 : weight, 2);
  b.writeUInt16BE(negative && digits.length > 0 ? 0x4000 : 0, 4);
  b.writeInt16BE(dscale, 6);
  for (let i = 0; i < digits.length; i++) b.writeInt16BE(digits[i] as number, 8 + 2 * i);
  return b;
}

/** Appends rows to a growing buffer and hands out full chunks. */
class ChunkWriter {
  private buf: Buffer;
  private at = 0;
  constructor(private readonly size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  ensure(n: number, flush: (b: Buffer) => void): void {
    if (this.at + n <= this.buf.length) return;
    if (this.at > 0) flush(this.buf.subarray(0, this.at));
    this.buf = Buffer.allocUnsafe(Math.max(this.size, n));
    this.at = 0;
  }
  int16(v: number): void {
    this.at = this.buf.writeInt16BE(v, this.at);
  }
  int32(v: number): void {
    this.at = this.buf.writeInt32BE(v, this.at);
  }
  int64(v: bigint): void {
    this.at = this.buf.writeBigInt64BE(v, this.at);
  }
  /** An 8-byte integer from a safe JS integer, without a BigInt allocation. */
  int64n(v: number): void {
    const hi = Math.floor(v / 4294967296);
    this.at = this.buf.writeInt32BE(hi, this.at);
    this.at = this.buf.writeUInt32BE(v - hi * 4294967296, this.at);
  }
  bytes(b: Buffer): void {
    this.at += b.copy(this.buf, this.at);
  }
  /** A text field: length word, then UTF-8 bytes. */
  text(s: string): void {
    const lenAt = this.at;
    this.at += 4;
    const n = this.buf.write(s, this.at, "utf8");
    this.buf.writeInt32BE(n, lenAt);
    this.at += n;
  }
  rest(): Buffer | null {
    return this.at === 0 ? null : this.buf.subarray(0, this.at);
  }
}

/** COPY BINARY chunks of the messages; `deleteFlag` adds the stage table's trailing boolean. */
export function* binaryChunks(messages: readonly BenchMessage[], deleteFlag: boolean, chunkBytes = 256 * 1024): Generator<Buffer> {
  const w = new ChunkWriter(chunkBytes);
  const out: Buffer[] = [binaryHeader()];
  // ensure() starts a new buffer after a flush, so the flushed view is never written again.
  const flush = (b: Buffer) => {
    out.push(b);
  };
  const fields = deleteFlag ? 8 : 7;
  for (const m of messages) {
    const d = m.data;
    const price = numericBinary(String(d.price));
    // Upper bound of the row size: fixed parts + UTF-8 name (≤ 3 bytes per UTF-16 unit).
    w.ensure(2 + fields * 4 + 8 + (d.name === null ? 0 : d.name.length * 3) + 8 + price.length + 1 + 8 + 8 + 1, flush);
    w.int16(fields);
    w.int32(8);
    w.int64n(d.id);
    if (d.name === null) w.int32(-1);
    else w.text(d.name);
    if (d.qty === null) w.int32(-1);
    else {
      w.int32(8);
      w.int64n(d.qty);
    }
    w.int32(price.length);
    w.bytes(price);
    w.int32(1);
    w.bytes(d.active ? ONE : ZERO);
    w.int32(8);
    w.int64n((Date.parse(d.updated_at) - PG_EPOCH_MS) * 1000);
    w.int32(8);
    w.int64(m.sequence);
    if (deleteFlag) {
      w.int32(1);
      w.bytes(ZERO);
    }
    while (out.length > 0) yield out.shift() as Buffer;
  }
  const rest = w.rest();
  if (rest !== null) yield rest;
  yield binaryTrailer();
}

const ONE = Buffer.from([1]);
const ZERO = Buffer.from([0]);
