import Database from 'better-sqlite3';
import { CtOpsError } from '../../common/errors.ts';
import { MIGRATIONS, type Migration } from './migrations/index.ts';

export type Db = Database.Database;

/**
 * Opens the appliance database: the one handle of this process. WAL lets the admin
 * API read while heartbeats write; synchronous=NORMAL is durable across process
 * crashes in WAL mode and loses at most the last commits on power loss, which the
 * agents re-send (heartbeats) or re-try (registration).
 */
export function openDatabase(path: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  let db: Db;
  try {
    db = new Database(path);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot open the database at ${path}`, { path }, { cause });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db, migrations);
  return db;
}

/** Applies the migrations newer than PRAGMA user_version, each in its own transaction. */
export function migrate(db: Db, migrations: readonly Migration[]): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new CtOpsError('ERR_SCHEMA_TOO_NEW', `the database schema is version ${current}; this appliance knows up to ${latest}`, { current, latest });
  }
  for (const migration of migrations) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    })();
  }
  return latest;
}

/** better-sqlite3 SqliteError codes (SQLITE_CONSTRAINT_UNIQUE, ...) when err is one. */
export function sqliteCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}
