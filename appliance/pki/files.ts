import { readFileSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';

/** The one atomic write (temp file, fsync, rename, directory fsync), shared with the agent. */
export { writeFileAtomic } from '../../common/atomic-write.ts';

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
