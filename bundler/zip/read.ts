/**
 * Reads a zip's central directory with yauzl and describes each entry the way an
 * extractor would act on it, without trusting it: names are taken raw (yauzl's own
 * name checks would abort the whole read; we want to report every problem), and the
 * Info-ZIP Unicode Path field, which `unzip` prefers over the header name, is compared.
 */
import { createHash } from 'node:crypto';
import yauzl from 'yauzl';

const UNIX = 3;
const FILE_TYPE_MASK = 0o170000;
const REGULAR = 0o100000;
const DIRECTORY = 0o040000;
const SYMLINK = 0o120000;

export type EntryKind = 'file' | 'directory' | 'symlink' | 'other';

export interface ZipEntryInfo {
  /** The name an extractor uses (Unicode Path extra field applied), backslashes kept. */
  readonly name: string;
  /** The name in the header itself. */
  readonly headerName: string;
  readonly kind: EntryKind;
  /** Permission bits when the entry was made on Unix, else undefined. */
  readonly permissions: number | undefined;
  readonly encrypted: boolean;
  readonly size: number;
  readonly entry: yauzl.Entry;
}

export interface ZipReader {
  readonly entries: readonly ZipEntryInfo[];
  /** Reads an entry whole; refuses more than maxBytes. */
  read(entry: ZipEntryInfo, maxBytes: number): Promise<Buffer>;
  /** Streams an entry through SHA-256. */
  sha256(entry: ZipEntryInfo): Promise<{ sha256: string; size: number }>;
  close(): void;
}

function describe(entry: yauzl.Entry): ZipEntryInfo {
  const raw = entry.fileNameRaw;
  const headerName = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, [], true);
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, true);
  const madeOnUnix = entry.versionMadeBy >> 8 === UNIX;
  const mode = madeOnUnix ? entry.externalFileAttributes >>> 16 : 0;
  const type = mode & FILE_TYPE_MASK;
  let kind: EntryKind = 'file';
  if (name.endsWith('/') || type === DIRECTORY || (!madeOnUnix && (entry.externalFileAttributes & 0x10) !== 0)) kind = 'directory';
  else if (type === SYMLINK) kind = 'symlink';
  else if (madeOnUnix && type !== REGULAR && type !== 0) kind = 'other';
  return {
    name,
    headerName,
    kind,
    permissions: madeOnUnix && type !== 0 ? mode & 0o7777 : undefined,
    encrypted: (entry.generalPurposeBitFlag & 0x1) !== 0,
    size: entry.uncompressedSize,
    entry,
  };
}

/** Opens a zip and lists its entries; throws (yauzl's error) when it is not a readable zip. */
export async function openZip(path: string): Promise<ZipReader> {
  const zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true, strictFileNames: true });
  const entries: ZipEntryInfo[] = [];
  try {
    for await (const entry of zip.eachEntry()) entries.push(describe(entry));
  } catch (error) {
    zip.close();
    throw error;
  }
  const stream = (info: ZipEntryInfo) => zip.openReadStreamPromise(info.entry);
  return {
    entries,
    async read(info, maxBytes) {
      if (info.size > maxBytes) throw new Error(`${info.name} is larger than ${maxBytes} bytes`);
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of await stream(info)) {
        total += (chunk as Buffer).length;
        if (total > maxBytes) throw new Error(`${info.name} is larger than ${maxBytes} bytes`);
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks);
    },
    async sha256(info) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of await stream(info)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      return { sha256: hash.digest('hex'), size };
    },
    close: () => zip.close(),
  };
}
