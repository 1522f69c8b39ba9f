/**
 * The data directory's lock: who may open the appliance's database (decision 108). The serving
 * appliance holds it for its lifetime, `ct-ops-bundle build` for a stopped-mode build, `restore`
 * while it replaces the directory; so "is the appliance running" and "open the stores" are one step,
 * and the appliance cannot start under a build that holds its database.
 *
 * The lock is an OS file lock (POSIX fcntl, released by the kernel when its process dies, so a crash
 * leaves nothing stale): SQLite's exclusive locking mode on DATA_DIR/appliance.lock, taken with an
 * exclusive transaction and kept until the handle closes. Beside it, DATA_DIR/appliance.lock.json names the holder
 * ({ holder, pid, since }) for the message of whoever is refused; it is informative only.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import { openSqliteFile, sqliteCode, type Db } from '../store/database.ts';
import { storageFailure } from '../store/storage-failure.ts';

export const LOCK_FILE = 'appliance.lock';
export const LOCK_HOLDER_FILE = 'appliance.lock.json';

/** Who holds the lock: the serving appliance, a restore, a stopped-mode bundle build. */
export type LockHolderKind = 'serve' | 'restore' | 'bundle-build';

interface LockHolder {
  readonly holder: LockHolderKind;
  readonly pid: number;
  /** ISO time the lock was taken. */
  readonly since: string;
}

export interface DataDirLock {
  release(): void;
}

/**
 * Takes the lock for `holder`, waiting up to `waitMs` (default 0) for another holder to release it.
 * Returns undefined when it is held after that; throws ERR_DATA_DIR_UNUSABLE when the lock file
 * cannot be opened.
 */
export function tryLockDataDir(dataDir: string, holder: LockHolderKind, waitMs = 0): DataDirLock | undefined {
  const path = join(dataDir, LOCK_FILE);
  let db: Db;
  try {
    db = openSqliteFile(path, { timeout: waitMs });
  } catch (cause) {
    // The addon failing to load (ERR_DATABASE) is the host's problem, not the lock file's.
    if (cause instanceof CtOpsError) throw cause;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot open the data directory's lock ${path}`, { path }, { cause });
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // An exclusive transaction takes SQLite's exclusive lock; in exclusive locking mode it is kept until close.
    // Nothing is written, so a full volume still reports itself where the database is opened.
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
  } catch (error) {
    db.close();
    if (sqliteCode(error) === 'SQLITE_BUSY') return undefined;
    throw storageFailure(error) ?? new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot take the data directory's lock ${path}`, { path }, { cause: error });
  }
  const holderPath = join(dataDir, LOCK_HOLDER_FILE);
  try {
    writeFileSync(holderPath, `${JSON.stringify({ holder, pid: process.pid, since: new Date().toISOString() } satisfies LockHolder)}\n`, { mode: 0o644 });
  } catch {
    // The note only names the holder for others' messages (a full volume, say): the lock holds without it.
  }
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      rmSync(holderPath, { force: true });
      db.close();
    },
  };
}

/** The holder the lock's note names, when that process is alive; undefined while a holder is starting or gone. */
export function lockHolder(dataDir: string): LockHolder | undefined {
  let note: LockHolder;
  try {
    note = JSON.parse(readFileSync(join(dataDir, LOCK_HOLDER_FILE), 'utf8')) as LockHolder;
    process.kill(note.pid, 0);
  } catch {
    return undefined;
  }
  return note;
}

/** Takes the lock for `holder` or throws ERR_DATA_DIR_LOCKED naming the process that holds it. */
export function lockDataDir(dataDir: string, holder: LockHolderKind): DataDirLock {
  const lock = tryLockDataDir(dataDir, holder);
  if (lock !== undefined) return lock;
  throw lockedError(dataDir);
}

/** ERR_DATA_DIR_LOCKED naming the holder (as its note says). */
export function lockedError(dataDir: string): CtOpsError {
  const current = lockHolder(dataDir);
  const who = current === undefined ? 'another process' : `${HOLDER_WORDS[current.holder]} (pid ${current.pid}, since ${current.since})`;
  return new CtOpsError('ERR_DATA_DIR_LOCKED', `${dataDir} is in use by ${who}: wait for it or stop it first`, { path: dataDir, ...(current ? { holder: current.holder, pid: current.pid } : {}) });
}

const HOLDER_WORDS: Readonly<Record<LockHolderKind, string>> = {
  serve: 'the running appliance',
  restore: 'a restore',
  'bundle-build': 'a ct-ops-bundle build',
};
