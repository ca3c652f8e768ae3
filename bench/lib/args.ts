/** Command-line options of `node dist/bench/bench.js`. */

export interface BenchOptions {
  quick: boolean;
  /** Rows for cases (a)–(d) and the raw COPY reference. */
  rows: number;
  /** Batches of case (e). */
  streamBatches: number;
  /** Messages per batch of case (e). */
  streamBatchSize: number;
  /** Total messages of case (f). */
  parallelRows: number;
  /** Writers of case (f). */
  writers: number;
  /** Messages per batch of case (f). */
  parallelBatchSize: number;
  /** Which cases to run (letters a–g). */
  cases: Set<string>;
  /** Messages in shuffled key order (default) or ascending. */
  shuffled: boolean;
  /** Runs per measurement of the reference and cases (a)–(d); the fastest counts. */
  repeat: number;
}

const USAGE = `usage: node dist/bench/bench.js [--quick] [--rows N] [--cases abcdefg] [--sorted] [--repeat R]
  --quick      small run (50,000 rows, 1,000 small batches), under a minute
  --rows N     rows for cases (a)-(d), the COPY reference and (f) (default 1,000,000)
  --cases L    run only these cases, e.g. --cases ace (g = CLI vs library and CLI peak RSS, needs dist/src/cli.js)
  --sorted     send messages in ascending key order instead of shuffled
  --repeat R   run each measurement of the reference, (a)-(d) and (g) R times, keep the fastest (default 1)
Uses DATABASE_URL if set, else an embedded PostgreSQL 18 in a temp dir.`;

export function parseArgs(argv: string[]): BenchOptions {
  let quick = false;
  let rows: number | null = null;
  let cases = "abcdefg";
  let shuffled = true;
  let repeat = 1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === "--quick") quick = true;
    else if (a === "--rows") {
      rows = Number(value().replaceAll("_", ""));
      if (!Number.isInteger(rows) || rows < 1000) throw new Error(`--rows must be an integer ≥ 1000\n${USAGE}`);
    } else if (a === "--cases") cases = value().toLowerCase();
    else if (a === "--sorted") shuffled = false;
    else if (a === "--repeat") {
      repeat = Number(value());
      if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a positive integer\n${USAGE}`);
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  const n = rows ?? (quick ? 50_000 : 1_000_000);
  return {
    quick,
    rows: n,
    streamBatches: quick ? 1_000 : 10_000,
    streamBatchSize: 100,
    parallelRows: n,
    writers: 8,
    parallelBatchSize: quick ? 2_500 : 10_000,
    cases: new Set(cases.split("")),
    shuffled,
    repeat,
  };
}
