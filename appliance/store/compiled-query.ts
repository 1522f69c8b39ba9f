import type { Compilable, CompiledQuery, QueryResult } from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import type { Executor } from './unit-of-work.ts';

/** Stands for the value named `name` while a query is built, so it can be found in the compiled parameters. */
class Placeholder {
  constructor(readonly name: string) {}
}

/** A compiled query and, for each of its parameters, the value's name or the constant the builder wrote. */
interface Template {
  readonly query: CompiledQuery;
  readonly parameters: readonly (Placeholder | unknown)[];
}

/**
 * A store query run with new values and built once: the query builder and compiler are not run
 * again. For the statements every registration, stream and heartbeat runs, where building and
 * compiling cost as much as SQLite running the statement (docs/decisions.md 132).
 *
 * `build(db, values)` must give the same SQL whatever the values: each `values.name` may only be
 * bound where Kysely writes a parameter (`where(column, '=', values.id)`, `.values({...})`,
 * `set({...})`), named one by one (spreading them throws) — never decide the query's shape (no `if`, no list spread into `in`, no LIMIT the
 * SQLite compiler inlines). The first run per dialect checks that every name read came out as a
 * parameter, and throws ERR_INTERNAL when one did not, so such a query fails its first test.
 *
 * Returns a function running the query on `db` (the database or a transaction) with `values`,
 * resolving to Kysely's QueryResult (`rows`, `numAffectedRows`); storage errors reject as from
 * `execute()`.
 */
export function compiledOnce<Values extends Record<string, unknown>, Row>(
  build: (db: Executor, values: Values) => Compilable<Row>,
): (db: Executor, values: Values) => Promise<QueryResult<Row>> {
  // One template per dialect: keyed by the adapter, which a Kysely instance shares with its transactions.
  const templates = new WeakMap<object, Template>();
  return async (db, values) => {
    const adapter = db.getExecutor().adapter;
    let template = templates.get(adapter);
    if (template === undefined) {
      template = compileTemplate(db, build);
      templates.set(adapter, template);
    }
    const parameters = template.parameters.map((parameter) => (parameter instanceof Placeholder ? values[parameter.name] : parameter));
    return db.executeQuery<Row>({ ...template.query, parameters } as CompiledQuery<Row>);
  };
}

function compileTemplate<Values extends Record<string, unknown>>(db: Executor, build: (db: Executor, values: Values) => Compilable<unknown>): Template {
  const read = new Set<string>();
  const placeholders = new Proxy({} as Values, {
    get(_target, name) {
      if (typeof name !== 'string') return undefined;
      read.add(name);
      return new Placeholder(name);
    },
    // Spreading or listing the values would silently find none: the builder must name each one.
    ownKeys() {
      throw new CtOpsError('ERR_INTERNAL', 'a compiled-once query spread or listed its values instead of naming each');
    },
  });
  const query = build(db, placeholders).compile();
  const bound = new Set(query.parameters.flatMap((parameter) => (parameter instanceof Placeholder ? [parameter.name] : [])));
  const unbound = [...read].filter((name) => !bound.has(name));
  if (unbound.length > 0) throw new CtOpsError('ERR_INTERNAL', 'a compiled-once query used a value other than as a parameter', { values: unbound.join(', '), sql: query.sql });
  return { query, parameters: query.parameters };
}
