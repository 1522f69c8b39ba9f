/**
 * Reads a bundle zip through one parser: bundler/zip/structure.ts checks the raw
 * bytes and yields each entry's verified data offset, and this module inflates from
 * exactly there with node:zlib. A second parser (yauzl, as before) would be a second
 * interpretation of the same bytes — the very thing the structural check rules out.
 * Every read also proves the data itself is unambiguous: the deflate stream ends
 * exactly at the compressed size (a streaming reader would otherwise look for the
 * next header inside the slack), and the CRC-32 and size match the headers.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import { CtOpsError } from '../../common/errors.ts';
import { quoted } from '../lib/quoted.ts';
import { ambiguous, readZipStructure, type ZipRecord } from './structure.ts';

const UNIX = 3;
const FILE_TYPE_MASK = 0o170000;
const REGULAR = 0o100000;
const DIRECTORY = 0o040000;
const SYMLINK = 0o120000;
const MSDOS_DIRECTORY = 0x10;
const DEFLATED = 8;

export type EntryKind = 'file' | 'directory' | 'symlink' | 'other';

export interface ZipEntryInfo {
  /** The entry's name, "/"-separated, a trailing "/" for a directory. */
  readonly name: string;
  readonly kind: EntryKind;
  /** Permission bits when the entry was made on Unix, else undefined. */
  readonly permissions: number | undefined;
  /** Uncompressed bytes. */
  readonly size: number;
  readonly record: ZipRecord;
}

export interface ZipReader {
  readonly entries: readonly ZipEntryInfo[];
  /** Reads an entry whole; refuses more than maxBytes. */
  read(entry: ZipEntryInfo, maxBytes: number): Promise<Buffer>;
  /** Streams an entry through SHA-256. */
  sha256(entry: ZipEntryInfo): Promise<{ sha256: string; size: number }>;
  close(): Promise<void>;
}

function describe(record: ZipRecord): ZipEntryInfo {
  const madeOnUnix = record.versionMadeBy >> 8 === UNIX;
  const mode = madeOnUnix ? record.externalAttributes >>> 16 : 0;
  const type = mode & FILE_TYPE_MASK;
  let kind: EntryKind = 'file';
  if (record.name.endsWith('/') || type === DIRECTORY || (!madeOnUnix && (record.externalAttributes & MSDOS_DIRECTORY) !== 0)) kind = 'directory';
  else if (type === SYMLINK) kind = 'symlink';
  else if (madeOnUnix && type !== REGULAR && type !== 0) kind = 'other';
  return { name: record.name, kind, permissions: madeOnUnix && type !== 0 ? mode & 0o7777 : undefined, size: record.uncompressedSize, record };
}

const CHUNK_BYTES = 64 * 1024;

/** Reads `length` bytes from `start` in chunks; one file handle serves every entry (a stream per entry would pile listeners on it). */
async function* readRange(file: FileHandle, start: number, length: number): AsyncGenerator<Buffer> {
  for (let done = 0; done < length; ) {
    const chunk = Buffer.alloc(Math.min(CHUNK_BYTES, length - done));
    const { bytesRead } = await file.read(chunk, 0, chunk.length, start + done);
    if (bytesRead === 0) throw new Error(`the file ends inside an entry's data (at ${start + done})`);
    done += bytesRead;
    yield chunk.subarray(0, bytesRead);
  }
}

/**
 * Streams an entry's uncompressed bytes to `onChunk`, then checks that the data
 * ended where the headers say. Stops early (ERR_BUNDLE_ZIP_AMBIGUOUS, reason
 * entry-data) when the output outgrows the declared size: no zip bomb is inflated.
 */
async function streamEntry(file: FileHandle, info: ZipEntryInfo, onChunk: (chunk: Buffer) => void): Promise<void> {
  const { record } = info;
  const bad = (what: string): CtOpsError => ambiguous('entry-data', `the data of ${quoted(info.name)} ${what}`, info.name);
  const raw = Readable.from(readRange(file, record.dataOffset, record.compressedSize));
  const inflate = record.method === DEFLATED ? createInflateRaw() : undefined;
  let size = 0;
  let crc = 0;
  try {
    for await (const chunk of inflate ? raw.pipe(inflate) : raw) {
      size += (chunk as Buffer).length;
      if (size > record.uncompressedSize) throw bad(`inflates to more than its declared ${record.uncompressedSize} bytes`);
      crc = crc32(chunk as Buffer, crc);
      onChunk(chunk as Buffer);
    }
  } catch (error) {
    raw.destroy();
    if (error instanceof CtOpsError) throw error;
    throw bad(`cannot be inflated: ${(error as Error).message}`);
  }
  if (inflate && inflate.bytesWritten !== record.compressedSize) throw bad(`ends its deflate stream after ${inflate.bytesWritten} of its ${record.compressedSize} compressed bytes`);
  if (size !== record.uncompressedSize) throw bad(`has ${size} bytes, its headers say ${record.uncompressedSize}`);
  if (crc !== record.crc32) throw bad(`has CRC-32 ${crc.toString(16)}, its headers say ${record.crc32.toString(16)}`);
}

/**
 * Opens a zip, checks its structure (readZipStructure: throws CtOpsError
 * ERR_BUNDLE_ZIP_AMBIGUOUS / ERR_BUNDLE_ZIP_TOO_LARGE / ERR_BUNDLE_ENTRY_INVALID)
 * and lists its entries in directory order. ENOENT and other open errors are thrown as they are.
 */
export async function openZip(path: string): Promise<ZipReader> {
  const file = await open(path, 'r');
  let entries: ZipEntryInfo[];
  try {
    entries = (await readZipStructure(file)).map(describe);
  } catch (error) {
    await file.close();
    throw error;
  }
  return {
    entries,
    async read(info, maxBytes) {
      if (info.size > maxBytes) throw new Error(`${info.name} is larger than ${maxBytes} bytes`);
      const chunks: Buffer[] = [];
      await streamEntry(file, info, (chunk) => chunks.push(chunk));
      return Buffer.concat(chunks);
    },
    async sha256(info) {
      const hash = createHash('sha256');
      await streamEntry(file, info, (chunk) => hash.update(chunk));
      return { sha256: hash.digest('hex'), size: info.size };
    },
    close: () => file.close(),
  };
}
