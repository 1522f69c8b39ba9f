import type { Compilable, CompiledQuery, QueryResult, RawBuilder } from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import type { Executor } from './unit-of-work.ts';

/** Stands for the value named `name` of row `row` while a query is built, so it can be found in the compiled parameters. */
class Placeholder {
  constructor(
    readonly row: number,
    readonly name: string,
  ) {}
}

/**
 * A store query run with new values and built once: the query builder and compiler are not run
 * again. For the statements every registration, stream and heartbeat runs, where building and
 * compiling cost as much as SQLite running the statement (docs/decisions.md 132).
 *
 * `build(db, values)` must give the same SQL whatever the values: each `values.name` may only be
 * bound where Kysely writes a parameter (`where(column, '=', values.id)`, `.values({...})`,
 * `set({...})`), named one by one (spreading them throws) — never decide the query's shape (no
 * `if`, no list spread into `in`, no LIMIT the SQLite compiler inlines). The first run per dialect
 * checks that every name read came out as a parameter, and throws ERR_INTERNAL when one did not, so
 * such a query fails its first test.
 *
 * Returns a function running the query on `db` (the database or a transaction) with `values`,
 * resolving to Kysely's QueryResult (`rows`, `numAffectedRows`); storage errors reject as from
 * `execute()`.
 */
export function compiledOnce<Values extends object, Row>(
  build: (db: Executor, values: Values) => Compilable<Row> | RawBuilder<Row>,
): (db: Executor, values: Values) => Promise<QueryResult<Row>> {
  const run = compiledOncePerLength((db, rows: readonly Values[]) => build(db, rows[0]!));
  return (db, values) => run(db, [values]);
}

/**
 * compiledOnce for a multi-row statement: built once per dialect and number of rows, `build(db,
 * rows)` getting that many rows of placeholders, under the same rules. For runs whose lengths come
 * from powerOfTwoRuns (runs.ts), so a handful of lengths each keep one template.
 */
export function compiledOncePerLength<Values extends object, Row>(
  build: (db: Executor, rows: readonly Values[]) => Compilable<Row> | RawBuilder<Row>,
): (db: Executor, rows: readonly Values[]) => Promise<QueryResult<Row>> {
  // Per dialect: keyed by the adapter, which a Kysely instance shares with its transactions; then by length.
  const templates = new WeakMap<object, Map<number, CompiledQuery>>();
  return async (db, rows) => {
    const adapter = db.getExecutor().adapter;
    let byLength = templates.get(adapter);
    if (byLength === undefined) templates.set(adapter, (byLength = new Map()));
    let template = byLength.get(rows.length);
    if (template === undefined) byLength.set(rows.length, (template = compileTemplate(db, build, rows.length)));
    // The template's parameters: a Placeholder where a value goes, else the constant the builder wrote.
    const parameters = template.parameters.map((parameter) => (parameter instanceof Placeholder ? (rows[parameter.row] as Record<string, unknown>)[parameter.name] : parameter));
    return db.executeQuery<Row>({ ...template, parameters } as CompiledQuery<Row>);
  };
}

function compileTemplate<Values extends object>(db: Executor, build: (db: Executor, rows: readonly Values[]) => Compilable<unknown> | RawBuilder<unknown>, length: number): CompiledQuery {
  const read = new Set<string>();
  const placeholderRows = Array.from({ length }, (_, row) =>
    new Proxy({} as Values, {
      get(_target, name) {
        if (typeof name !== 'string') return undefined;
        read.add(`${row}/${name}`);
        return new Placeholder(row, name);
      },
      // Spreading or listing the values would silently find none: the builder must name each one.
      ownKeys() {
        throw new CtOpsError('ERR_INTERNAL', 'a compiled-once query spread or listed its values instead of naming each');
      },
    }),
  );
  // A query builder compiles on its own executor; raw SQL (`sql`…``) on the one given.
  const query = build(db, placeholderRows).compile(db);
  const bound = new Set(query.parameters.flatMap((parameter) => (parameter instanceof Placeholder ? [`${parameter.row}/${parameter.name}`] : [])));
  const unbound = [...read].filter((name) => !bound.has(name));
  if (unbound.length > 0) throw new CtOpsError('ERR_INTERNAL', 'a compiled-once query used a value other than as a parameter', { values: unbound.join(', '), sql: query.sql });
  return query;
}
