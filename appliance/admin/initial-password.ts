import { fstatSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import { INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { SECRET_FILE_MODE, writeFileAtomic } from '../pki/files.ts';

/**
 * True when file descriptor `fd` is the stream systemd connected to the journal. systemd sets
 * JOURNAL_STREAM to "<device>:<inode>" (decimal) of that stream (systemd.exec(5), $JOURNAL_STREAM;
 * sd_journal_stream_fd(3)): the variable alone is not enough, a child may inherit it with other output.
 */
export function isJournalStream(env: NodeJS.ProcessEnv, fd: number): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!match) return false;
  try {
    const stats = fstatSync(fd, { bigint: true });
    return stats.dev === BigInt(match[1]!) && stats.ino === BigInt(match[2]!);
  } catch {
    return false;
  }
}

/**
 * Writes the first admin's one-time password to DATA_DIR/initial-admin-password (mode 0600, owned
 * by the account the appliance runs as) instead of a log that others may read for good; returns its path.
 */
export function writeInitialPassword(dataDir: string, password: string): string {
  const path = join(dataDir, INITIAL_PASSWORD_FILE);
  writeFileAtomic(path, `${password}\n`, SECRET_FILE_MODE);
  return path;
}

/** Removes the one-time password file, once its password was used or replaced; true when there was one. Errors: ERR_DATA_DIR_UNUSABLE. */
export function removeInitialPassword(dataDir: string): boolean {
  const path = join(dataDir, INITIAL_PASSWORD_FILE);
  try {
    rmSync(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot remove ${path}`, { path }, { cause: error });
  }
}
