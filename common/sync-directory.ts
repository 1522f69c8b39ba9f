import { closeSync, fsyncSync, openSync } from 'node:fs';

/**
 * fsyncs a directory, so that a file created, renamed or removed in it is durable (POSIX leaves a
 * new name in the directory's own data). Throws the fs error as it is (ENOENT, EACCES).
 */
export function syncDirectory(directory: string): void {
  // Windows cannot open a directory for fsync; there the rename is already durable enough.
  if (process.platform === 'win32') return;
  const fd = openSync(directory, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
