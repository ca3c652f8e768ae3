/** Where a command writes: results on stdout, diagnostics on stderr. One call, one line. */
export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const processIo: Io = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** Resolves once everything written so far to stdout and stderr has been handed to the OS. */
export function flushOutput(): Promise<void> {
  const flush = (s: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => (s.writableLength === 0 ? resolve() : s.write("", () => resolve())));
  return Promise.all([flush(process.stdout), flush(process.stderr)]).then(() => undefined);
}
