/**
 * The loaders behind `seqload serve`: one for the default schema, plus one per schema a token is
 * bound to, all on ONE pool (so the pool size bounds connections overall, however many tenants).
 * Per-schema loaders hold caches (table shapes, statements), so they are kept in a
 * least-recently-used cache of `maxCached` entries: a tenant evicted from it gets a fresh loader
 * on its next batch, which reads its table shapes from the catalog again (a few ms), nothing more.
 * The default schema's loader is never evicted.
 */
import { type Loader, type LoaderStats, createLoader } from "../loader.js";
import { ConfigurationError } from "../errors.js";
import { type LoaderOptions, resolveOptions } from "../options.js";

/** Default for --max-schemas-cached: per-schema loaders kept; the least recently used goes first. */
export const DEFAULT_MAX_SCHEMAS_CACHED = 256;

export interface Tenants {
  /** The loader for a token's bound schema (null: the default schema). Never blocks; needs no `this`. */
  loaderFor: (schema: string | null) => Loader;
  /** Per-schema loaders currently cached (the default schema's not counted). */
  readonly cached: number;
  /** Loaders created since start (the default one not counted): above `cached`, some were evicted. */
  readonly created: number;
  /** Ends the pool if the default loader created it; the others borrow it and own nothing. */
  close(): Promise<void>;
}

const NO_STATS: Readonly<LoaderStats> = { batches: 0, retries: 0, replans: 0 };

/**
 * A Loader that is usable at once: createLoader is async, but the app asks for a loader
 * synchronously (in a request hook and a log line). The real one is ready a microtask later.
 */
function deferredLoader(options: LoaderOptions, onLoaded: () => void): Loader {
  const resolved = resolveOptions(options); // throws at once on a bad schema name
  const pending = createLoader(options);
  let real: Loader | null = null;
  pending.then(
    (loader) => {
      real = loader;
    },
    () => {}, // reported by loadBatch below
  );
  return {
    loadBatch: async (batch, loadOptions) => {
      const result = await (await pending).loadBatch(batch, loadOptions);
      onLoaded();
      return result;
    },
    async *loadBatches(batches) {
      for await (const result of (await pending).loadBatches(batches)) {
        onLoaded();
        yield result;
      }
    },
    maxSequence: async (table) => (await pending).maxSequence(table),
    sequences: async (table, keys) => (await pending).sequences(table, keys),
    close: async () => {}, // borrows the shared pool
    pool: options.pool as NonNullable<LoaderOptions["pool"]>,
    options: resolved,
    get stats() {
      return real?.stats ?? NO_STATS;
    },
  };
}

export async function createTenants(options: LoaderOptions, maxCached: number): Promise<Tenants> {
  if (!Number.isSafeInteger(maxCached) || maxCached < 1) {
    throw new ConfigurationError(`maxSchemasCached must be a positive integer, got ${String(maxCached)}`);
  }
  const main = await createLoader(options);
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  const bySchema = new Map<string, Loader>();
  let created = 0;
  // Once a batch has loaded, seqload's migrations are known to be applied: loaders made after that
  // (new tenants, evicted ones coming back) skip the check, two queries fewer on their first batch.
  let migrated = options.migrate === false;
  const loaded = () => {
    migrated = true;
  };
  return {
    loaderFor(schema) {
      if (schema === null || schema === main.options.schema) return main;
      let loader = bySchema.get(schema);
      if (loader !== undefined) {
        bySchema.delete(schema);
      } else {
        loader = deferredLoader({ ...options, connectionString: undefined, pool: main.pool, schema, migrate: !migrated }, loaded);
        created += 1;
        if (bySchema.size >= maxCached) {
          const oldest = bySchema.keys().next().value;
          if (oldest !== undefined) bySchema.delete(oldest); // a batch still using it keeps its reference
        }
      }
      bySchema.set(schema, loader);
      return loader;
    },
    get cached() {
      return bySchema.size;
    },
    get created() {
      return created;
    },
    close: () => main.close(),
  };
}
