import Database from 'better-sqlite3';
import { errorCodeOf } from '../../common/errors.ts';

/** Which declared constraint a statement broke, the same name on every backend. */
export type ConstraintKind = 'unique' | 'foreign-key' | 'check' | 'not-null';

// SQLite extended result codes (sqlite.org/rescode.html); a PRIMARY KEY is a unique constraint.
const SQLITE_CONSTRAINTS: Readonly<Record<string, ConstraintKind>> = {
  SQLITE_CONSTRAINT_UNIQUE: 'unique',
  SQLITE_CONSTRAINT_PRIMARYKEY: 'unique',
  SQLITE_CONSTRAINT_FOREIGNKEY: 'foreign-key',
  SQLITE_CONSTRAINT_CHECK: 'check',
  SQLITE_CONSTRAINT_NOTNULL: 'not-null',
};

// PostgreSQL SQLSTATE class 23, integrity constraint violation (postgresql.org/docs/15/errcodes-appendix.html).
const POSTGRES_CONSTRAINTS: Readonly<Record<string, ConstraintKind>> = {
  '23505': 'unique',
  '23503': 'foreign-key',
  '23514': 'check',
  '23502': 'not-null',
};

/**
 * The constraint a failed statement broke, from better-sqlite3's SqliteError code or pg's SQLSTATE
 * (`error.code`, five characters); undefined for any other error. Stores use it to turn a conflict
 * they expect (a nonce already used, a host deleted meanwhile) into their own answer.
 */
export function constraintViolation(error: unknown): ConstraintKind | undefined {
  if (error instanceof Database.SqliteError) return SQLITE_CONSTRAINTS[error.code];
  const code = errorCodeOf(error);
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? POSTGRES_CONSTRAINTS[code] : undefined;
}
