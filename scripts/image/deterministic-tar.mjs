// A tar stream whose bytes depend only on the entries given: node-tar's ustar/pax header
// encoders (Header, Pax), fed fixed times and owners, in the order the caller sorted. node-tar's
// own Pack reads owners, times and modes from the disk, so two builders' checkouts would differ.
import { createReadStream } from 'node:fs';
import { Header, Pax } from 'tar';
import { BuildImageError } from './errors.mjs';

const BLOCK = 512;

/**
 * One member of a deterministic tar stream.
 * @typedef {object} TarEntry
 * @property {string} path     relative, '/'-separated, no trailing slash
 * @property {'Directory' | 'File' | 'SymbolicLink'} type
 * @property {number} mode     permission bits (e.g. 0o755, 0o1777)
 * @property {number} [uid]    default 0
 * @property {number} [gid]    default 0
 * @property {string} [file]   File: host path of the content (read when the stream reaches it)
 * @property {Buffer} [data]   File: the content, when not read from a host path
 * @property {number} [size]   File with `file`: its size in bytes, checked when read
 * @property {string} [linkpath] SymbolicLink: the target
 */

/**
 * Orders paths so that a folder comes right before its content and siblings sort by code
 * unit: "a", "a/b", "a-b" (a plain string sort would put "a-b" between "a" and "a/b").
 * @param {{ path: string }} left
 * @param {{ path: string }} right
 */
export function byTarPath(left, right) {
  const a = left.path.split('/');
  const b = right.path.split('/');
  for (let index = 0; index < Math.min(a.length, b.length); index += 1) {
    if (a[index] !== b[index]) return a[index] < b[index] ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * The tar stream of `entries`, in the order given, every entry stamped with `mtime` and no
 * user or group names. Yields Buffers; ends with the two zero blocks of the format.
 * Throws BuildImageError ERR_TOOL_FAILED when a `file` entry's content is not `size` bytes when read
 * (changed during the build).
 * @param {readonly TarEntry[]} entries
 * @param {Date} mtime
 * @returns {AsyncGenerator<Buffer>}
 */
export async function* tarBlocks(entries, mtime) {
  for (const entry of entries) {
    const size = entry.type === 'File' ? (entry.data?.length ?? entry.size ?? 0) : 0;
    const fields = {
      path: entry.type === 'Directory' ? `${entry.path}/` : entry.path,
      mode: entry.mode,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      size,
      mtime,
      type: entry.type,
      linkpath: entry.linkpath ?? '',
      uname: '',
      gname: '',
    };
    const header = Buffer.alloc(BLOCK);
    // A path or link target too long for ustar goes first into a pax extended header.
    if (new Header(fields).encode(header)) {
      yield new Pax({ path: fields.path, linkpath: entry.linkpath, mtime }).encode();
    }
    yield header;
    if (entry.type !== 'File') continue;
    if (entry.data) {
      yield entry.data;
    } else {
      let read = 0;
      for await (const chunk of createReadStream(/** @type {string} */ (entry.file))) {
        read += chunk.length;
        if (read > size) break;
        yield chunk;
      }
      if (read !== size) throw new BuildImageError('ERR_TOOL_FAILED', `${entry.file} changed while it was being archived (expected ${size} bytes, read ${read})`);
    }
    if (size % BLOCK !== 0) yield Buffer.alloc(BLOCK - (size % BLOCK));
  }
  yield Buffer.alloc(2 * BLOCK);
}
