import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';

/** Writes a file atomically (temp file, fsync, rename) with the given mode. */
export function writeFileAtomic(path: string, content: string | Uint8Array, mode: number): void {
  const temp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(temp, 'w', mode);
    try {
      writeSync(fd, typeof content === 'string' ? Buffer.from(content, 'utf8') : content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(temp, mode);
    renameSync(temp, path);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write ${path}`, { path }, { cause });
  }
}

/** Reads a file the appliance created earlier; undefined when it does not exist. */
export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot read ${path}`, { path }, { cause: error });
  }
}

export const SECRET_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
