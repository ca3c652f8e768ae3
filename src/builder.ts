/**
 * kysely as seqload's SQL builder, used only to compile: the compiled text and parameters run
 * through pg (named prepared statements, COPY), never through a kysely driver.
 *
 * Two rules keep hostile names safe. Names are checked (63 bytes, NUL, surrogates) before they get
 * here (identifiers.ts), and the data table never passes through kysely's table-name parser,
 * which splits on "." and " as ": queries name it `TARGET` and the compile step swaps in the real
 * schema-qualified table node. Columns are plain identifiers (kysely does not parse column names).
 *
 * A value that differs per batch is a `slot`: the query compiles once per table shape with slots as
 * parameters, and `bind` puts each batch's values in their place. No code here or elsewhere numbers
 * parameters by hand.
 */
import {
  type CompiledQuery,
  DummyDriver,
  Kysely,
  OperationNodeTransformer,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type RawBuilder,
  type RootOperationNode,
  TableNode,
  createQueryId,
  sql,
} from "kysely";

/** Every table seqload builds SQL for is dynamic: rows are records of unknown columns. */
type Tables = Record<string, Record<string, unknown>>;

/** A Kysely instance that compiles PostgreSQL and cannot execute anything. */
export const db = new Kysely<Tables>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/** The name queries use for the data table; `compileFor` replaces it by the real one. */
export const TARGET = "seqload_target";

class TargetTable extends OperationNodeTransformer {
  constructor(private readonly target: TableNode) {
    super();
  }
  protected override transformTable(node: TableNode): TableNode {
    return node.table.schema === undefined && node.table.identifier.name === TARGET ? this.target : super.transformTable(node);
  }
}

/** Anything kysely can compile (a query or schema builder). */
interface Buildable {
  toOperationNode(): RootOperationNode;
}

const compiler = new PostgresQueryCompiler();

/** Compile a query whose data table is written `TARGET`, for the table `schema`.`table`. */
export function compileFor(schema: string, table: string, query: Buildable): CompiledQuery {
  const node = new TargetTable(TableNode.createWithSchema(schema, table)).transformNode(query.toOperationNode());
  return compiler.compileQuery(node, createQueryId());
}

/** A named placeholder for a value that differs per batch. */
class Slot {
  constructor(readonly name: string) {}
}

/** The parameter `name` as an SQL expression, optionally cast (`$n::type`). */
export function slot<T = unknown>(name: string, cast?: string): RawBuilder<T> {
  const value = sql.val(new Slot(name));
  return cast === undefined ? sql<T>`${value}` : sql<T>`${value}::${sql.raw(cast)}`;
}

/** A compiled statement: its text and, per parameter, the slot that fills it. */
export interface Statement {
  text: string;
  slots: string[];
}

export function statement(compiled: CompiledQuery): Statement {
  const slots = compiled.parameters.map((p) => {
    if (!(p instanceof Slot)) throw new Error("seqload bug: a literal value was compiled into a shared statement");
    return p.name;
  });
  return { text: compiled.sql, slots };
}

/** The parameters of one execution, in the order the statement wants them. */
export function bind(s: Statement, values: Readonly<Record<string, unknown>>): unknown[] {
  return s.slots.map((name) => {
    const v = values[name];
    if (v === undefined) throw new Error(`seqload bug: no value for parameter ${name}`);
    return v;
  });
}
