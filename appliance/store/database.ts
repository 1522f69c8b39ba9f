import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CtOpsError } from '../../common/errors.ts';
import { packageRoot } from '../../common/package-root.ts';
import { MIGRATIONS, type Migration } from './migrations/index.ts';
import { refuseNewerSchema } from './schema-version.ts';
import { storageFailure } from './storage-failure.ts';

export type Db = Database.Database;

/**
 * The better-sqlite3 addon of an appliance image (dist/better_sqlite3.node, built by
 * scripts/build-image.mjs for the image's own Node and CPU), or undefined in a clone, where
 * better-sqlite3 finds its addon in node_modules as usual (nativeBinding undefined). An image has no
 * node_modules.
 */
function imageAddon(): string | undefined {
  const path = join(packageRoot(), 'dist', 'better_sqlite3.node');
  return existsSync(path) ? path : undefined;
}

/**
 * Every better-sqlite3 handle of the appliance opens here (the serving database, backup copies,
 * doctor's read-only look), so the image's addon is used wherever one is opened. Options as
 * better-sqlite3's constructor. Throws ERR_DATABASE when the addon does not load on this host (the same
 * for every file opened, the data directory's lock included), else what better-sqlite3 throws (a
 * SqliteError, or a TypeError for a bad path).
 */
export function openSqliteFile(path: string, options: Database.Options = {}): Db {
  const nativeBinding = imageAddon();
  try {
    return new Database(path, { ...options, nativeBinding });
  } catch (cause) {
    // Not the file's fault: the host lacks what the image's addon links against (an older glibc).
    if ((cause as NodeJS.ErrnoException).code === 'ERR_DLOPEN_FAILED') {
      throw new CtOpsError('ERR_DATABASE', `the SQLite addon ${nativeBinding ?? 'of better-sqlite3'} does not load on this host (the image's README.md names the glibc it needs): ${(cause as Error).message}`, { path }, { cause });
    }
    throw cause;
  }
}

/**
 * Opens the appliance database: the one handle of this process's event loop (a serving appliance's WAL
 * checkpoint thread has its own, which only checkpoints: wal-checkpointer.ts). WAL lets the admin
 * API read while heartbeats write; synchronous=NORMAL is durable across process
 * crashes in WAL mode and loses at most the last commits on power loss, which the
 * agents re-send (heartbeats) or re-try (registration). Throws ERR_DATABASE when the SQLite addon
 * does not load on this host, ERR_DATA_DIR_UNUSABLE when the file cannot be opened, ERR_STORAGE_* when the storage refuses the set-up or a migration.
 */
export function openDatabase(path: string, migrations: readonly Migration[] = MIGRATIONS, options: { readonly migrate?: boolean } = {}): Db {
  let db: Db;
  try {
    db = openSqliteFile(path);
  } catch (cause) {
    if (cause instanceof CtOpsError) throw cause;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot open the database at ${path}`, { path }, { cause });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    if (options.migrate === false) requireCurrentSchema(db, migrations);
    else migrate(db, migrations);
  } catch (error) {
    db.close();
    // A read-only or full volume fails here already (WAL files, a migration): say so by its code.
    throw storageFailure(error) ?? error;
  }
  return db;
}

/**
 * Applies the migrations newer than PRAGMA user_version, each in its own transaction, then truncates
 * the WAL: a migration that rebuilds a table (008) writes the table again into the WAL, which
 * otherwise stays that size on disk (docs/operations.md, Upgrades). Throws ERR_INTERNAL when the
 * versions do not run 1, 2, 3, … (checkMigrationOrder).
 */
export function migrate(db: Db, migrations: readonly Migration[]): number {
  checkMigrationOrder(migrations);
  const current = sqliteSchemaVersion(db);
  const latest = refuseNewerSchema(current, migrations);
  const pending = migrations.filter((migration) => migration.version > current);
  for (const migration of pending) {
    db.transaction(() => {
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
    })();
  }
  if (pending.length > 0) db.pragma('wal_checkpoint(TRUNCATE)');
  return latest;
}

/**
 * For a tool that opens the database of a stopped appliance and must never migrate it (ct-ops-bundle
 * build): throws ERR_SCHEMA_OUTDATED when the schema is older than `migrations` know (the appliance
 * migrates at its start, with its own checks and log), ERR_SCHEMA_TOO_NEW when newer.
 */
function requireCurrentSchema(db: Db, migrations: readonly Migration[]): void {
  const current = sqliteSchemaVersion(db);
  const latest = refuseNewerSchema(current, migrations);
  if (current < latest) {
    throw new CtOpsError('ERR_SCHEMA_OUTDATED', `the database schema is version ${current}, this build needs ${latest}: start the appliance once (it upgrades the database), then run this again`, { current, latest });
  }
}

/**
 * Refuses a migration list whose versions are not exactly 1, 2, 3, … in order: a gap (a migration
 * missing from the list) or a repeat (two branches' migrations merged with one number) would skip a
 * schema change or mark a database as at a version it never reached. Throws ERR_INTERNAL naming the first bad entry.
 */
export function checkMigrationOrder(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new CtOpsError('ERR_INTERNAL', `migration list entry ${index + 1} ("${migration.description}") has version ${migration.version}; versions must run 1, 2, 3, … without gaps or repeats`, { index, version: migration.version });
    }
  });
}

/** A SQLite database's schema version: PRAGMA user_version, which migrate() sets (0 for a new file). */
export function sqliteSchemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** better-sqlite3 SqliteError codes (SQLITE_CONSTRAINT_UNIQUE, ...) when err is one. */
export function sqliteCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}

/**
 * What `ct-ops-appliance doctor` reads of a database, opened read-only beside a running appliance
 * (WAL readers do not block it) and never migrated: PRAGMA quick_check's verdict and the schema
 * version (PRAGMA user_version). `problem` says why the file cannot be trusted (damaged, not a database, unreadable).
 */
export function inspectDatabase(path: string): { readonly schemaVersion: number; readonly problem?: string } {
  let db: Db | undefined;
  try {
    db = openSqliteFile(path, { readonly: true, fileMustExist: true });
    const verdict = db.pragma('quick_check', { simple: true }) as string;
    const schemaVersion = sqliteSchemaVersion(db);
    return verdict === 'ok' ? { schemaVersion } : { schemaVersion, problem: `quick_check: ${verdict}` };
  } catch (error) {
    return { schemaVersion: 0, problem: `${sqliteCode(error) ?? 'error'}: ${(error as Error).message}` };
  } finally {
    db?.close();
  }
}
