/**
 * Reads an extracted bundle folder — what the operator actually carries to the host —
 * as a BundleSource, so it passes the same checks as the zip. Entries are listed with
 * lstat (a symlink is reported as one, never followed), and files are opened with
 * O_NOFOLLOW and O_NONBLOCK (a FIFO swapped in after the listing cannot hang the
 * read) and must still be the regular file that was listed (same inode, same mode).
 *
 * Errors: CtOpsError ERR_BUNDLE_ZIP_TOO_LARGE (reason too-many-entries) when the
 * folder holds more entries than a bundle zip may; ERR_BUNDLE_ENTRY_INVALID (reason
 * changeable-by-others) when the folder or an entry could be changed by another user after it
 * verified; read errors as Error.
 */
import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, opendir, type FileHandle } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import type { EntryKind } from '../zip/read.ts';
import { MAX_ENTRIES } from '../zip/structure.ts';
import { quoted } from '../lib/quoted.ts';
import type { BundleEntry, BundleSource } from './source.ts';

export interface FolderEntry extends BundleEntry {
  readonly path: string;
  readonly inode: number;
}

function kindOf(stats: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): EntryKind {
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isDirectory()) return 'directory';
  return stats.isFile() ? 'file' : 'other';
}

/**
 * Refuses a folder or file that someone other than root or the verifying user could change after
 * it verified — what is verified must be what install.sh then copies: owned by one of them, not
 * writable by group or others, and (files) no second hard link through which it could be changed
 * from elsewhere. ERR_BUNDLE_ENTRY_INVALID, reason `changeable-by-others`.
 */
function checkOnlyOwnerCanChange(name: string, stats: Stats): void {
  // A link's own mode means nothing; the layout check refuses links anyway.
  if (stats.isSymbolicLink()) return;
  const owners = new Set([0, process.getuid?.() ?? 0]);
  const why = !owners.has(stats.uid)
    ? `is owned by uid ${stats.uid}, neither root nor the verifying user`
    : (stats.mode & 0o022) !== 0
      ? `is writable by ${(stats.mode & 0o020) !== 0 ? 'its group' : 'others'} (mode ${(stats.mode & 0o777).toString(8)})`
      : stats.isFile() && stats.nlink > 1
        ? `has ${stats.nlink} hard links: it can be changed through another name`
        : undefined;
  if (why !== undefined) throw new CtOpsError('ERR_BUNDLE_ENTRY_INVALID', `${quoted(name)} ${why}; it could change after it verified`, { reason: 'changeable-by-others', path: name });
}

async function listFolder(folder: string, top: string): Promise<FolderEntry[]> {
  const entries: FolderEntry[] = [];
  checkOnlyOwnerCanChange(`${top}/`, await lstat(folder));
  for await (const dirent of await opendir(folder)) {
    if (entries.length === MAX_ENTRIES) throw new CtOpsError('ERR_BUNDLE_ZIP_TOO_LARGE', `${folder} holds more than ${MAX_ENTRIES} entries; a bundle has about a dozen`, { reason: 'too-many-entries', path: folder });
    const path = join(folder, dirent.name);
    const stats = await lstat(path);
    const kind = kindOf(stats);
    const name = `${top}/${dirent.name}${kind === 'directory' ? '/' : ''}`;
    checkOnlyOwnerCanChange(name, stats);
    entries.push({ name, kind, permissions: stats.mode & 0o7777, size: stats.size, path, inode: stats.ino });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function openListed(entry: FolderEntry): Promise<FileHandle> {
  const file = await open(entry.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  const stats = await file.stat();
  if (!stats.isFile() || stats.ino !== entry.inode || (stats.mode & 0o7777) !== entry.permissions) {
    await file.close();
    throw new Error(`${entry.path} changed while it was being verified`);
  }
  return file;
}

async function streamFile(entry: FolderEntry, onChunk: (chunk: Buffer) => void): Promise<number> {
  const file = await openListed(entry);
  let size = 0;
  try {
    for await (const chunk of file.createReadStream({ autoClose: false })) {
      size += (chunk as Buffer).length;
      onChunk(chunk as Buffer);
    }
  } finally {
    await file.close();
  }
  return size;
}

/** Lists an extracted bundle folder; its own name is the bundle's top folder. */
export async function openFolder(folder: string): Promise<BundleSource<FolderEntry>> {
  const entries = await listFolder(folder, basename(resolve(folder)));
  return {
    entries,
    async read(entry, maxBytes) {
      const chunks: Buffer[] = [];
      let total = 0;
      await streamFile(entry, (chunk) => {
        total += chunk.length;
        if (total > maxBytes) throw new Error(`${entry.name} is larger than ${maxBytes} bytes`);
        chunks.push(chunk);
      });
      return Buffer.concat(chunks);
    },
    async sha256(entry) {
      const hash = createHash('sha256');
      const size = await streamFile(entry, (chunk) => hash.update(chunk));
      return { sha256: hash.digest('hex'), size };
    },
    close: async () => {},
  };
}
