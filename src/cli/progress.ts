/**
 * A progress line on stderr for long loads: only when stderr is a terminal and not --json, and
 * only once a load has run for a second, so short loads print nothing but their summaries.
 */
import cliProgress from "cli-progress";

export interface ProgressState {
  bytes: number;
  batches: number;
  messages: number;
}

export interface Progress {
  /** Report how far the load is. */
  update(state: ProgressState): void;
  /** Print a summary line on stdout without tearing the progress line. */
  print(line: string): void;
  stop(): void;
}

const DELAY_MS = 1000;

export function createProgress(opts: { enabled: boolean; totalBytes: number | null; print: (line: string) => void }): Progress {
  if (!opts.enabled) return { update() {}, print: opts.print, stop() {} };
  const started = Date.now();
  let multibar: cliProgress.MultiBar | null = null;
  let bar: cliProgress.SingleBar | null = null;
  const known = opts.totalBytes !== null && opts.totalBytes > 0;
  const payload = (s: ProgressState) => ({
    batches: s.batches.toLocaleString("en-US"),
    messages: s.messages.toLocaleString("en-US"),
    rate: Math.round(s.messages / Math.max(0.001, (Date.now() - started) / 1000)).toLocaleString("en-US"),
  });
  return {
    update(state) {
      if (bar === null) {
        if (Date.now() - started < DELAY_MS) return;
        multibar = new cliProgress.MultiBar({
          stream: process.stderr,
          format: known
            ? "loading [{bar}] {percentage}% | {batches} batches | {messages} messages | {rate} messages/s | ETA {eta_formatted}"
            : "loading | {batches} batches | {messages} messages | {rate} messages/s",
          clearOnComplete: true,
          hideCursor: false,
          barsize: 30,
          fps: 5,
        });
        bar = multibar.create(known ? (opts.totalBytes as number) : 1, 0, payload(state));
      }
      bar.update(known ? state.bytes : 0, payload(state));
    },
    print(line) {
      // Both streams on one terminal: let the bar print the line above itself.
      if (multibar !== null && process.stdout.isTTY) multibar.log(`${line}\n`);
      else opts.print(line);
    },
    stop() {
      if (multibar === null) return;
      multibar.update(); // flushes lines passed to log()
      multibar.stop();
      multibar = null;
      bar = null;
    },
  };
}
