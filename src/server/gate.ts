/**
 * Backpressure and graceful shutdown for the batch endpoint. A batch holds a slot from the moment
 * it is admitted until both its HTTP exchange has ended and its load has finished (a client that
 * hangs up mid-load does not free the slot early: its transaction is still using a connection).
 * Admission never waits: a full gate answers 503 at once, so a burst cannot queue up behind the
 * pg pool and time out there instead.
 */

export class InFlightGate {
  #active = 0;
  #waiters: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** Batches currently admitted. */
  get active(): number {
    return this.#active;
  }

  /** Take a slot if one is free. */
  tryAcquire(): boolean {
    if (this.#active >= this.limit) return false;
    this.#active++;
    return true;
  }

  release(): void {
    if (this.#active === 0) throw new Error("InFlightGate.release() without a slot (a seqload bug)");
    this.#active--;
    if (this.#active === 0) for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves once no batch holds a slot. */
  whenIdle(): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/**
 * A reference count over one batch request: one reference for the HTTP exchange, one more while
 * its load runs. `onDone` runs once, when both are over (release the slot, write the log line).
 */
export class Exchange {
  #refs = 1;
  #done = false;

  constructor(private readonly onDone: () => void) {}

  /** Take a reference for work that must finish before onDone; false if the exchange already ended. */
  hold(): boolean {
    if (this.#done) return false;
    this.#refs++;
    return true;
  }

  drop(): void {
    if (this.#done) return;
    if (--this.#refs === 0) {
      this.#done = true;
      this.onDone();
    }
  }
}
