import { chmod, mkdir, mkdtemp } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';

/**
 * A private (0700) work directory beside `path` (named .<name>.<purpose>-XXXXXX), on the same volume:
 * a database copy may be large where /tmp is a small tmpfs, and a restore's last step is one rename.
 * The caller removes it. Throws ERR_DATA_DIR_UNUSABLE when it cannot be made.
 */
export async function workDirectoryBeside(path: string, purpose: 'backup' | 'restore'): Promise<string> {
  try {
    await mkdir(dirname(path), { recursive: true });
    const work = await mkdtemp(join(dirname(path), `.${basename(path)}.${purpose}-`));
    await chmod(work, 0o700);
    return work;
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create a work directory beside ${path}`, { path }, { cause });
  }
}
