import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Bytes on disk per package row, its unique index and name-index entry, with room (measured: 200–310). */
const BYTES_PER_PACKAGE = 320;
/** Of the free space, at most this share may go to the database. */
const DISK_SHARE = 0.6;

/**
 * A fresh data directory under the temporary directory for a bench's database of `hosts` × `perHost`
 * packages, with the size it will take about and the space free there (bytes). Throws, leaving nothing
 * behind, when the database would take more than DISK_SHARE of the free space.
 */
export function packageDatabaseDir(prefix: string, hosts: number, perHost: number): { dir: string; estimatedBytes: number; freeBytes: number } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const free = statfsSync(dir);
  const freeBytes = free.bavail * free.bsize;
  const estimatedBytes = hosts * perHost * BYTES_PER_PACKAGE;
  if (estimatedBytes > DISK_SHARE * freeBytes) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`the database would take about ${(estimatedBytes / 1024 ** 3).toFixed(1)} GiB, more than ${DISK_SHARE * 100} % of the ${(freeBytes / 1024 ** 3).toFixed(1)} GiB free in ${tmpdir()}: lower BENCH_HOSTS or BENCH_PACKAGES`);
  }
  return { dir, estimatedBytes, freeBytes };
}
