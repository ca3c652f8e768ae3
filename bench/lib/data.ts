/**
 * Deterministic benchmark data: Stitch-shaped messages with six columns (bigint key `id`, a text,
 * an integer, a number, a boolean, a date-time) and 19-digit bigint sequences. Everything here
 * runs before the timed sections; the timed code only reads what this builds.
 */
import type { Batch, BatchMessage } from "../../src/index.js";

/** The record every message carries. */
export type BenchRecord = {
  id: number;
  name: string | null;
  qty: number | null;
  price: number;
  active: boolean;
  updated_at: string;
};

export interface BenchMessage extends BatchMessage {
  action: "upsert";
  sequence: bigint;
  data: BenchRecord;
}

/** A fresh copy of the batch schema (as a JSON body would carry it). */
export function benchSchema(): Batch["schema"] {
  return {
    type: "object",
    properties: {
      id: { type: "integer" },
      name: { type: ["null", "string"] },
      qty: { type: ["null", "integer"] },
      price: { type: "number" },
      active: { type: "boolean" },
      updated_at: { type: "string", format: "date-time" },
    },
  };
}

/** 19-digit sequences, as target-stitch sends them (µs × 1000 + index ≈ 1.7e18). */
export const SEQUENCE_BASE = 1_700_000_000_000_000_000n;
/** Distance between the sequences of two versions of the data set. */
export const VERSION_STEP = 1_000_000_000_000n;

/** mulberry32: small, fast, seeded. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded Fisher–Yates permutation of 0…n-1. */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = p[i] as number;
    p[i] = p[j] as number;
    p[j] = t;
  }
  return p;
}

const WORDS = [
  "alpha",
  "bravo",
  "charlie",
  "delta",
  "echo",
  "foxtrot",
  "golf",
  "hotel",
  "india",
  "juliett",
  "kilo",
  "lima",
  "mike",
  "november",
  "oscar",
  "papa",
];
const TIME_BASE_MS = Date.UTC(2024, 0, 1);

/**
 * Record number `k` of data-set version `version`. Values are spread like real data: about 5%
 * NULLs, 1% of the names need COPY escaping (tab, backslash, newline), some are non-ASCII.
 */
function record(id: number, k: number, version: number): BenchRecord {
  const h = Math.imul(k ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  const word = WORDS[h % WORDS.length] as string;
  let name: string | null = `${word} customer ${k} v${version}`;
  if (h % 100 === 7) name = `${word}\tquoted \\ "name"\n${k}`;
  else if (h % 100 === 11) name = `Zoë ${word} ${k} — v${version}`;
  else if (h % 20 === 3) name = null;
  return {
    id,
    name,
    qty: h % 19 === 5 ? null : (h % 100_000) + version,
    price: Math.round(((h >>> 3) % 10_000_000) + version) / 100,
    active: (h + version) % 3 === 0,
    updated_at: new Date(TIME_BASE_MS + k * 1000 + version * 86_400_000).toISOString(),
  };
}

/**
 * `n` messages for the keys id = 2·k + parity (k = 0…n-1, so the even and the odd key sets never
 * meet), in a shuffled order, with sequences ascending through the batch like a real stream.
 */
export function dataSet(n: number, opts: { version: number; parity: 0 | 1; order: Uint32Array | null }): BenchMessage[] {
  const messages = new Array<BenchMessage>(n);
  const base = SEQUENCE_BASE + BigInt(opts.version) * VERSION_STEP;
  for (let rank = 0; rank < n; rank++) {
    const k = opts.order === null ? rank : (opts.order[rank] as number);
    messages[rank] = { action: "upsert", sequence: base + BigInt(rank), data: record(2 * k + opts.parity, k, opts.version) };
  }
  return messages;
}

/** Wrap messages into Stitch batches of at most `size` messages (each with its own schema object). */
export function toBatches(table: string, messages: BenchMessage[], size: number): Batch[] {
  const batches: Batch[] = [];
  for (let i = 0; i < messages.length; i += size) {
    batches.push({ table_name: table, key_names: ["id"], schema: benchSchema(), messages: messages.slice(i, i + size) });
  }
  return batches;
}

/**
 * Case (e): `count` batches of `size` messages; batch b covers keys firstKey + b·size/2 … + size-1,
 * so half of every batch updates keys of the previous batch (higher sequences) and half is new.
 */
export function streamMessages(count: number, size: number, firstKey: number): BenchMessage[][] {
  const out: BenchMessage[][] = [];
  const half = Math.floor(size / 2);
  let seq = SEQUENCE_BASE;
  for (let b = 0; b < count; b++) {
    const messages: BenchMessage[] = [];
    for (let j = 0; j < size; j++) {
      const k = firstKey + b * half + j;
      messages.push({ action: "upsert", sequence: seq++, data: record(k, k, b) });
    }
    out.push(messages);
  }
  return out;
}

/**
 * Case (f): `total` messages over `keys` keys, each with a unique sequence drawn at random, split
 * round-robin into `writers` streams. Returns the streams and, per key, the winning message.
 */
export function contendedStreams(
  total: number,
  keys: number,
  writers: number,
  seed: number,
): { streams: BenchMessage[][]; winners: Map<number, BenchMessage> } {
  const r = rng(seed);
  const seqOrder = permutation(total, seed + 1);
  const streams: BenchMessage[][] = Array.from({ length: writers }, () => []);
  const winners = new Map<number, BenchMessage>();
  for (let i = 0; i < total; i++) {
    const id = Math.floor(r() * keys);
    const m: BenchMessage = { action: "upsert", sequence: SEQUENCE_BASE + BigInt(seqOrder[i] as number), data: record(id, id, i) };
    (streams[i % writers] as BenchMessage[]).push(m);
    const w = winners.get(id);
    if (w === undefined || m.sequence > w.sequence) winners.set(id, m);
  }
  return { streams, winners };
}

/** `messages` in the order `order` (a permutation of their indices). */
export function permute<T>(messages: readonly T[], order: Uint32Array): T[] {
  return Array.from(order, (i) => messages[i] as T);
}
