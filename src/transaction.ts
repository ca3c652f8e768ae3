/**
 * The one transaction helper: BEGIN, the work, COMMIT, or ROLLBACK and rethrow. The loader runs
 * each batch through `inPoolTransaction`; the migrations run each file through `inTransaction`.
 */
import type pg from "pg";
import { isConnectionError } from "./errors.js";
import { checkout } from "./options.js";

type Queryable = Pick<pg.ClientBase, "query">;

/** Connections whose ROLLBACK failed: their state is unknown, so they are destroyed, not reused. */
const unusable = new WeakSet<Queryable>();

/** Run `fn` between BEGIN and COMMIT on `client`; on failure roll back (if the connection still works) and rethrow. */
export async function inTransaction<T>(client: Queryable, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await fn();
    await client.query("COMMIT");
    return result;
  } catch (e) {
    // A lost connection has rolled back by itself; a ROLLBACK on it would only fail again.
    if (!isConnectionError(e)) {
      await client.query("ROLLBACK").catch(() => {
        unusable.add(client);
      });
    }
    throw e;
  }
}

/**
 * A connection from the pool for `fn`, returned afterwards; destroyed instead when the connection
 * broke or its ROLLBACK failed, so that the pool never hands out a broken connection.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await checkout(pool);
  try {
    const result = await fn(client);
    client.release();
    return result;
  } catch (e) {
    client.release(isConnectionError(e) || unusable.has(client) ? (e as Error) : undefined);
    throw e;
  }
}

/** `fn` in a transaction of its own on a pooled connection. */
export async function inPoolTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, (client) => inTransaction(client, () => fn(client)));
}
