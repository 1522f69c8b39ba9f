import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { CtOpsError } from './errors.ts';
import { syncDirectory } from './sync-directory.ts';

/**
 * Replaces `path` with `content` so a crash leaves either the old or the new file,
 * never a torn one: write a temporary file beside it with the final mode, fsync,
 * rename over the target, then fsync the directory so the rename itself is durable. The temporary
 * file is removed when any step fails. Used by the agent and the appliance alike. Throws
 * ERR_DATA_DIR_UNUSABLE.
 */
export function writeFileAtomic(path: string, content: string | Uint8Array, mode: number): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fd = openSync(temporary, 'wx', mode);
    try {
      // The umask may have narrowed or (0644 public key) must not widen the mode: set it exactly.
      if (process.platform !== 'win32') fchmodSync(fd, mode);
      writeSync(fd, typeof content === 'string' ? Buffer.from(content, 'utf8') : content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (cause) {
    rmSync(temporary, { force: true });
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write ${path}: ${(cause as Error).message}`, { path }, { cause });
  }
  syncDirectory(dirname(path));
}
