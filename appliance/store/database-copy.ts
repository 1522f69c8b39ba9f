import { existsSync, rmSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';
import { type Db, openSqliteFile, sqliteCode, sqliteSchemaVersion } from './database.ts';
import { refuseNewerSchema } from './schema-version.ts';
import { storageFailure } from './storage-failure.ts';
import { MIGRATIONS } from './migrations/index.ts';

/** The most pages sqlite3_backup_step may copy in one call (better-sqlite3 clamps the rate to 31 bits). */
const ALL_PAGES = 0x7fffffff;

/**
 * Copies the live database at `sourcePath` into a new file `targetPath` with SQLite's online backup
 * API, while the serving appliance keeps writing (or while it is stopped). The source is never written or migrated.
 * After better-sqlite3's first, empty step has learned the page count, the rest is copied in ONE
 * step: a backup that copies a few pages per step restarts whenever another connection commits
 * between steps, which under steady heartbeats never ends (decision 66). One step holds one WAL
 * read transaction, so the copy is a consistent snapshot and the writer is not blocked.
 * Returns the copy's page count. Throws ERR_DATA_DIR_UNUSABLE when the source cannot be opened,
 * ERR_STORAGE_* when the target's volume refuses the copy.
 */
export async function copyLiveDatabase(sourcePath: string, targetPath: string): Promise<{ pages: number }> {
  let source: Db;
  try {
    // Read-only: the backup never writes the live database. With the appliance stopped this handle
    // may leave the -wal/-shm it needed behind; run as root, SQLite gives them the database file's
    // owner (unixOpen's fchown of journal and WAL files), so the service user still opens them.
    source = openSqliteFile(sourcePath, { readonly: true, fileMustExist: true, timeout: 5000 });
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot open the database ${sourcePath}`, { path: sourcePath }, { cause });
  }
  try {
    const { totalPages } = await source.backup(targetPath, { progress: () => ALL_PAGES });
    // The copy carries the source's WAL flag; as a rollback-journal file it is one self-contained
    // file that opens read-only without -wal/-shm beside it. The appliance sets WAL again at start.
    const copy = openSqliteFile(targetPath, { fileMustExist: true });
    try {
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    return { pages: totalPages };
  } catch (error) {
    throw storageFailure(error) ?? new CtOpsError('ERR_DATABASE', `the online backup of ${sourcePath} failed`, { path: sourcePath }, { cause: error });
  } finally {
    source.close();
  }
}

/**
 * Checks a database copy before it is packed or restored: PRAGMA integrity_check must answer "ok",
 * and its schema (PRAGMA user_version) must be one this build knows. Opens it read-only, never
 * migrates it, and removes any -wal/-shm the open left beside it. Returns the schema version.
 * Throws ERR_BACKUP_DAMAGED for a damaged file or one that is not a database, ERR_SCHEMA_TOO_NEW
 * for a schema newer than MIGRATIONS' last.
 */
export function checkDatabaseCopy(path: string): { schemaVersion: number } {
  let db: Db | undefined;
  try {
    db = openSqliteFile(path, { readonly: true, fileMustExist: true });
    const problems = (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((row) => row.integrity_check);
    if (problems.length !== 1 || problems[0] !== 'ok') {
      throw new CtOpsError('ERR_BACKUP_DAMAGED', `the database copy fails PRAGMA integrity_check: ${problems.slice(0, 3).join('; ')}`, { path });
    }
    const schemaVersion = sqliteSchemaVersion(db);
    refuseNewerSchema(schemaVersion, MIGRATIONS, 'the backed-up database', 'restore it with that newer version');
    return { schemaVersion };
  } catch (error) {
    if (error instanceof CtOpsError) throw error;
    throw new CtOpsError('ERR_BACKUP_DAMAGED', `the database copy cannot be read as a SQLite database`, { path }, { cause: error });
  } finally {
    db?.close();
    // A read-only connection cannot remove the WAL files it needed (a WAL-flagged file from an altered archive).
    for (const suffix of ['-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  }
}

/**
 * Refuses when another process has the database at `path` open, i.e. the appliance serves from it:
 * restore --force must not move a data directory a live process keeps writing into. SQLite's own
 * file locks answer this (a WAL-mode connection holds a shared lock on the file for as long as it
 * is open, and the kernel drops it when the process dies): an exclusive-locking-mode BEGIN EXCLUSIVE
 * with no busy timeout fails with SQLITE_BUSY while any other connection is open. Unlike a pid file,
 * a crashed appliance leaves no stale lock and a pid in another namespace cannot mislead it. A file
 * that is absent, or that SQLite cannot open or read as a database (a damaged one that restore is
 * to replace), is not in use. Throws ERR_APPLIANCE_RUNNING.
 */
export function assertDatabaseNotInUse(path: string): void {
  if (!existsSync(path)) return;
  let db: Db | undefined;
  try {
    db = openSqliteFile(path, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } catch (error) {
    if (sqliteCode(error) === 'SQLITE_BUSY') {
      throw new CtOpsError('ERR_APPLIANCE_RUNNING', `a process (the appliance?) has ${path} open: stop it before restoring over its data directory`, { path }, { cause: error });
    }
  } finally {
    db?.close();
  }
}
