import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';

/**
 * A private (0700) work directory named .<name>.<purpose>-XXXXXX in `parent`, made with `parent` if
 * absent. Backup stages its database copy inside the data directory (workDirectoryIn(dataDir)) and
 * restore unpacks beside it (workDirectoryIn(dirname(dataDir))): the same volume (a database copy
 * may be large where /tmp is a small tmpfs; a restore's last step is one rename) and the same trust
 * domain as the secrets themselves — never the output's directory, which may be a USB stick.
 * The caller removes it. Synchronous on purpose: the caller adds the path to its removeOnSignal set
 * in the same tick, so no signal handler can run between the directory's creation and its
 * registration (an awaited mkdtemp left that gap, and a SIGINT in it left the work directory behind).
 * Throws ERR_DATA_DIR_UNUSABLE when it cannot be made.
 */
export function workDirectoryIn(parent: string, name: string, purpose: 'backup' | 'restore'): string {
  try {
    mkdirSync(parent, { recursive: true });
    const work = mkdtempSync(join(parent, `.${name}.${purpose}-`));
    chmodSync(work, 0o700);
    return work;
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create a work directory in ${parent}`, { path: parent }, { cause });
  }
}

/** The restore's work directory: beside `dataDir`, so that the finished one is renamed into place. */
export function workDirectoryBeside(dataDir: string): string {
  return workDirectoryIn(dirname(dataDir), basename(dataDir), 'restore');
}

const CLEANUP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Until the returned function is called, SIGINT, SIGTERM and SIGHUP remove every path in `paths`
 * (the caller may add to the set later, e.g. an output once created) and exit with 128 + the
 * signal's number, as a shell reports it: an interrupted backup or restore leaves no work files,
 * no copy of a key, no partial output behind. Node's default on these signals is to exit without
 * running any cleanup.
 */
export function removeOnSignal(paths: Set<string>): () => void {
  const onSignal = (signal: NodeJS.Signals): void => {
    for (const path of paths) rmSync(path, { recursive: true, force: true });
    process.exit(128 + constants.signals[signal]);
  };
  for (const signal of CLEANUP_SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of CLEANUP_SIGNALS) process.off(signal, onSignal);
  };
}
