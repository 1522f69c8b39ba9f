/**
 * Writes a bundle zip reproducibly (docs/bundle-format.md, "Reproducibility"):
 * entries sorted by path under one top folder, no directory entries, every entry
 * with the same DOS time, modes 0644/0755 only, deflate at one fixed level, no
 * extended-timestamp extra fields. The file appears atomically (temp + rename).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { CtOpsError } from '../../common/errors.ts';
import type { BundleFile } from '../lib/bundle-file.ts';
import { byName } from '../lib/sha256sums.ts';

export const COMPRESSION_LEVEL = 6;
const REGULAR_FILE = 0o100000;
/** The DOS date range, kept a day clear of its ends so no time zone can clamp it. */
const EARLIEST_MS = Date.UTC(1980, 0, 2);
const LATEST_MS = Date.UTC(2107, 11, 30);

/**
 * DOS times have no zone and yazl reads a Date's local fields; this Date answers
 * those with its UTC fields, so the stored time is the same in every time zone.
 */
class UtcWallClock extends Date {
  override getFullYear(): number {
    return this.getUTCFullYear();
  }
  override getMonth(): number {
    return this.getUTCMonth();
  }
  override getDate(): number {
    return this.getUTCDate();
  }
  override getHours(): number {
    return this.getUTCHours();
  }
  override getMinutes(): number {
    return this.getUTCMinutes();
  }
  override getSeconds(): number {
    return this.getUTCSeconds();
  }
}

export function zipEntryTime(epochMs: number): Date {
  return new UtcWallClock(Math.min(LATEST_MS, Math.max(EARLIEST_MS, epochMs)));
}

export interface WrittenZip {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** Hashes and counts what passes through. */
function digestTap(onDone: (sha256: string, size: number) => void): Transform {
  const hash = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      onDone(hash.digest('hex'), size);
      callback();
    },
  });
}

export async function writeBundleZip(path: string, topFolder: string, files: readonly BundleFile[], epochMs: number, fileMode: number): Promise<WrittenZip> {
  const zip = new yazl.ZipFile();
  const mtime = zipEntryTime(epochMs);
  for (const file of [...files].sort((a, b) => byName(a.name, b.name))) {
    zip.addBuffer(file.data, `${topFolder}/${file.name}`, {
      mtime,
      mode: REGULAR_FILE | file.mode,
      compress: true,
      compressionLevel: COMPRESSION_LEVEL,
      forceDosTimestamp: true,
    });
  }
  zip.end();
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let sha256 = '';
  let size = 0;
  try {
    await pipeline(
      zip.outputStream,
      digestTap((digest, bytes) => {
        sha256 = digest;
        size = bytes;
      }),
      createWriteStream(temp, { mode: fileMode }),
    );
    await rename(temp, path);
  } catch (cause) {
    await rm(temp, { force: true });
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write the bundle ${path}: ${(cause as Error).message}`, { path }, { cause });
  }
  return { path, size, sha256 };
}
