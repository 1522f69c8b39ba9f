/**
 * The structural check of a zip, made on its raw bytes before any reader interprets
 * it (issue 8, item 1: a verifier and unzip once read different files from one zip).
 * Zip readers disagree wherever the format is redundant or lenient: where the central
 * directory is (the end record's offset, or the end record's position minus the
 * directory size), which end record counts (the last one, the first one, a Zip64
 * one), whether a local header or its central record decides, where stored data
 * with a data descriptor ends, which name an extra field substitutes. So a zip is
 * accepted only when there is nothing to disagree about:
 *
 * - exactly one end record, the only end-record signature in the last 64 KiB + 22
 *   bytes (where readers scan backwards), ending the file with its declared comment;
 *   disk numbers 0, one entry count, no Zip64 (a bundle never reaches 4 GiB);
 * - one central directory, ending exactly where the end record starts, holding
 *   exactly the declared number of records and nothing else;
 * - local entries (header, data, data descriptor) tiling the file from offset 0 to
 *   the directory, without gaps or overlaps, each agreeing with its central record
 *   (version needed, flags, method, CRC and sizes, name bytes);
 * - only deflate or stored, no encryption or other flags beyond data descriptor,
 *   deflate options and UTF-8; stored data never with a data descriptor (streaming
 *   readers must then scan for the descriptor's signature inside the data);
 * - extra fields only of kinds that change nothing a reader extracts (timestamps,
 *   Unix owners), well formed, each kind at most once;
 * - names without NUL, ASCII unless flagged UTF-8 (and then valid UTF-8), and no two
 *   names that one file system could take for the same file (case, Unicode
 *   normalisation, "dir/" against "dir");
 * - comments (which unzip prints) in printable ASCII.
 *
 * Counts and sizes are bounded from the end record before the directory is read.
 * Whether compressed data ends exactly at its stated size is checked when the data
 * is read (bundler/zip/read.ts): that needs the data inflated, which verify does
 * once anyway.
 *
 * Errors: CtOpsError ERR_BUNDLE_ZIP_AMBIGUOUS with details.reason (a StructureReason)
 * and details.path (the entry's name, when one is concerned); ERR_BUNDLE_ZIP_TOO_LARGE
 * for the bounds; ERR_BUNDLE_ENTRY_INVALID when there is no end record at all.
 */
import type { FileHandle } from 'node:fs/promises';
import { CtOpsError } from '../../common/errors.ts';
import { quoted } from '../lib/quoted.ts';

/** A bundle has about a dozen files; the bound keeps a hostile directory small to read. */
export const MAX_ENTRIES = 1000;
/** The sum of the entries' uncompressed sizes. */
export const MAX_TOTAL_BYTES = 4 * 1024 ** 3;
const MAX_DIRECTORY_BYTES = 1024 * 1024;
/** Offsets are 32-bit without Zip64. */
const MAX_FILE_BYTES = 0xffffffff;

const END_SIGNATURE = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const DESCRIPTOR_SIGNATURE = 0x08074b50;
const END_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_LOCATOR_BYTES = 20;
const CENTRAL_BYTES = 46;
const LOCAL_BYTES = 30;
const DESCRIPTOR_BYTES = 12;

const STORED = 0;
const DEFLATED = 8;
/** The highest "version needed to extract" without Zip64, bzip2 or encryption (APPNOTE 4.4.3). */
const MAX_VERSION_NEEDED = 20;
const FLAG_ENCRYPTED = 0x0001;
const FLAG_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;
/** Data descriptor, the two deflate option bits (Info-ZIP sets them from -1..-9), UTF-8 names. */
const ALLOWED_FLAGS = FLAG_DESCRIPTOR | 0x0002 | 0x0004 | FLAG_UTF8;
const ZIP64_EXTRA = 0x0001;
/** Extra fields that carry only times or Unix owners (root only: namesOnlyRoot): extended timestamp, Info-ZIP Unix (three generations), NTFS times, the JAR marker. */
const HARMLESS_EXTRA = new Set([0x5455, 0x7875, 0x7855, 0x5855, 0x000a, 0xcafe]);
const EXTRA_NAMES = new Map([[0x7075, 'an Info-ZIP Unicode Path field, which unzip prefers over the header name'], [0x000d, 'a PKWARE Unix field, which can carry a link target']]);
const ZIP64_MARK_16 = 0xffff;
const ZIP64_MARK_32 = 0xffffffff;

export type StructureReason =
  | 'second-end-record'
  | 'trailing-bytes'
  | 'zip64'
  | 'multi-disk'
  | 'entry-count-mismatch'
  | 'directory-misplaced'
  | 'directory-malformed'
  | 'prefix'
  | 'gap'
  | 'overlap'
  | 'local-header-mismatch'
  | 'descriptor-mismatch'
  | 'flags'
  | 'method'
  | 'version-needed'
  | 'extra-field'
  | 'name-nul'
  | 'name-encoding'
  | 'duplicate-name'
  | 'directory-with-data'
  | 'comment'
  | 'entry-data';

export type SizeReason = 'file-too-large' | 'too-many-entries' | 'directory-too-large' | 'expands-too-large';

/** One entry as its central record and local header both describe it. */
export interface ZipRecord {
  /** The name decoded (UTF-8 when flagged, else ASCII). */
  readonly name: string;
  readonly versionMadeBy: number;
  readonly flags: number;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly externalAttributes: number;
  /** Where the local header starts, in bytes from the start of the file. */
  readonly localOffset: number;
  /** Where the (compressed) data starts. */
  readonly dataOffset: number;
}

export function ambiguous(reason: StructureReason, message: string, path?: string): CtOpsError {
  return new CtOpsError('ERR_BUNDLE_ZIP_AMBIGUOUS', message, { reason, ...(path !== undefined ? { path } : {}) });
}

function tooLarge(reason: SizeReason, message: string): CtOpsError {
  return new CtOpsError('ERR_BUNDLE_ZIP_TOO_LARGE', message, { reason });
}

async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, position);
  return buffer.subarray(0, bytesRead);
}

interface EndRecord {
  readonly offset: number;
  readonly entries: number;
  readonly directoryOffset: number;
  readonly directorySize: number;
}

async function readEndRecord(file: FileHandle, size: number): Promise<EndRecord> {
  if (size > MAX_FILE_BYTES) throw tooLarge('file-too-large', `the zip is ${size} bytes; without Zip64 a zip ends below 4 GiB`);
  const tailStart = Math.max(0, size - END_BYTES - MAX_COMMENT_BYTES);
  const tail = await readAt(file, tailStart, size - tailStart);
  const found: number[] = [];
  for (let at = tail.indexOf(END_SIGNATURE); at >= 0; at = tail.indexOf(END_SIGNATURE, at + 1)) found.push(at);
  if (found.length === 0 || found[0]! + END_BYTES > tail.length) {
    throw new CtOpsError('ERR_BUNDLE_ENTRY_INVALID', 'not a zip: no end-of-central-directory record', { reason: 'not-a-zip' });
  }
  const offset = tailStart + found[0]!;
  if (found.length > 1) {
    throw ambiguous('second-end-record', `end-of-central-directory signatures at ${found.map((at) => tailStart + at).join(' and ')}: readers that scan from the end take a different one`);
  }
  const end = tail.subarray(found[0]!);
  const commentLength = end.readUInt16LE(20);
  if (offset + END_BYTES + commentLength !== size) {
    throw ambiguous('trailing-bytes', `the end record at ${offset} with a ${commentLength}-byte comment should end the file at ${offset + END_BYTES + commentLength}, but the file has ${size} bytes`);
  }
  checkComment(end.subarray(END_BYTES), 'the zip comment');
  const entries = end.readUInt16LE(10);
  const directorySize = end.readUInt32LE(12);
  const directoryOffset = end.readUInt32LE(16);
  const locator = offset >= ZIP64_LOCATOR_BYTES ? await readAt(file, offset - ZIP64_LOCATOR_BYTES, 4) : Buffer.alloc(0);
  if (entries === ZIP64_MARK_16 || directorySize === ZIP64_MARK_32 || directoryOffset === ZIP64_MARK_32 || (locator.length === 4 && locator.readUInt32LE(0) === ZIP64_LOCATOR_SIGNATURE)) {
    throw ambiguous('zip64', 'the zip uses a Zip64 end record; bundles never need Zip64 and readers without it see a different directory');
  }
  if (end.readUInt16LE(4) !== 0 || end.readUInt16LE(6) !== 0) throw ambiguous('multi-disk', 'the end record names a disk other than 0 (a split archive)');
  if (end.readUInt16LE(8) !== entries) throw ambiguous('entry-count-mismatch', `the end record counts ${end.readUInt16LE(8)} entries on this disk but ${entries} in all`);
  if (entries > MAX_ENTRIES) throw tooLarge('too-many-entries', `the zip declares ${entries} entries; a bundle has far fewer than ${MAX_ENTRIES}`);
  if (directorySize > MAX_DIRECTORY_BYTES) throw tooLarge('directory-too-large', `the central directory is ${directorySize} bytes; a bundle's is far below ${MAX_DIRECTORY_BYTES}`);
  if (directoryOffset + directorySize !== offset) {
    throw ambiguous(
      'directory-misplaced',
      `the end record puts the central directory at ${directoryOffset} with ${directorySize} bytes, which ends at ${directoryOffset + directorySize}, not at the end record (${offset}): readers that trust the offset and readers that trust the size read different directories`,
    );
  }
  return { offset, entries, directoryOffset, directorySize };
}

/**
 * Whether an extra field names no owner but root: true for the time-only fields and for Info-ZIP
 * Unix fields whose uid and gid are 0, false for any other owner, undefined when malformed.
 * Readers disagree on owners: bsdtar and `unzip -X` run as root give the extracted file that
 * owner, `unzip` and python's zipfile do not, so a bundle may name root only. Layouts from
 * Info-ZIP's extrafld.txt: 0x7875 version 1, uid size, uid, gid size, gid; 0x7855 uid(2) gid(2)
 * in local headers, empty in central ones; 0x5855 atime(4) mtime(4), optionally uid(2) gid(2).
 */
function namesOnlyRoot(id: number, data: Buffer): boolean | undefined {
  const zero = (bytes: Buffer): boolean => bytes.every((byte) => byte === 0);
  if (id === 0x7875) {
    if (data.length === 0) return true;
    if (data[0] !== 1 || data.length < 2) return undefined;
    const uidEnd = 2 + data[1]!;
    if (uidEnd + 1 > data.length) return undefined;
    const gidEnd = uidEnd + 1 + data[uidEnd]!;
    if (gidEnd !== data.length) return undefined;
    return zero(data.subarray(2, uidEnd)) && zero(data.subarray(uidEnd + 1, gidEnd));
  }
  if (id === 0x7855) return data.length === 0 || (data.length === 4 ? zero(data) : undefined);
  if (id === 0x5855) return data.length === 8 || (data.length === 12 ? zero(data.subarray(8)) : undefined);
  return true;
}

/** Checks the extra fields of one header; `where` is "central" or "local". */
function checkExtra(extra: Buffer, name: string, where: string): void {
  const seen = new Set<number>();
  for (let at = 0; at < extra.length; ) {
    if (at + 4 > extra.length || at + 4 + extra.readUInt16LE(at + 2) > extra.length) throw ambiguous('extra-field', `the ${where} extra field of ${quoted(name)} is malformed`, name);
    const id = extra.readUInt16LE(at);
    if (id === ZIP64_EXTRA) throw ambiguous('zip64', `the ${where} header of ${quoted(name)} has a Zip64 field; bundles never need Zip64`, name);
    if (!HARMLESS_EXTRA.has(id)) {
      const what = EXTRA_NAMES.get(id) ?? `an extra field of kind 0x${id.toString(16).padStart(4, '0')}, which some readers act on`;
      throw ambiguous('extra-field', `the ${where} header of ${quoted(name)} has ${what}`, name);
    }
    if (seen.has(id)) throw ambiguous('extra-field', `the ${where} header of ${quoted(name)} repeats extra field 0x${id.toString(16).padStart(4, '0')}`, name);
    seen.add(id);
    const rootOnly = namesOnlyRoot(id, extra.subarray(at + 4, at + 4 + extra.readUInt16LE(at + 2)));
    if (rootOnly === undefined) throw ambiguous('extra-field', `the ${where} extra field 0x${id.toString(16).padStart(4, '0')} of ${quoted(name)} is malformed`, name);
    if (!rootOnly) throw ambiguous('extra-field', `the ${where} header of ${quoted(name)} names a file owner other than root (field 0x${id.toString(16).padStart(4, '0')}), which bsdtar and unzip -X apply as root and unzip does not`, name);
    at += 4 + extra.readUInt16LE(at + 2);
  }
}

/** unzip prints comments to the terminal as they are: only printable ASCII, tabs and line breaks. */
function checkComment(comment: Buffer, what: string, path?: string): void {
  if (comment.some((byte) => (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte > 0x7e)) {
    throw ambiguous('comment', `${what} holds control or non-ASCII bytes, which unzip would print to the terminal`, path);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(raw: Buffer, flags: number): string {
  const shown = quoted(raw.toString('latin1'));
  if (raw.includes(0)) throw ambiguous('name-nul', `the name ${shown} contains a NUL byte, where C readers cut it short`, raw.toString('latin1'));
  if ((flags & FLAG_UTF8) === 0) {
    if (raw.some((byte) => byte >= 0x80)) throw ambiguous('name-encoding', `the name ${shown} has non-ASCII bytes without the UTF-8 flag (readers decode them as CP437 or UTF-8)`, raw.toString('latin1'));
    return raw.toString('ascii');
  }
  try {
    return UTF8.decode(raw);
  } catch {
    throw ambiguous('name-encoding', `the name ${shown} is flagged UTF-8 but is not valid UTF-8`, raw.toString('latin1'));
  }
}

/** The file a name lands on where case and Unicode normalisation do not count (Windows, macOS). */
function collisionKey(name: string): string {
  return name.replace(/\/$/, '').normalize('NFKC').toLowerCase();
}

interface CentralRecord extends Omit<ZipRecord, 'dataOffset'> {
  readonly rawName: Buffer;
  readonly versionNeeded: number;
}

function parseCentral(directory: Buffer, at: number): { record: CentralRecord; next: number } {
  if (at + CENTRAL_BYTES > directory.length || directory.readUInt32LE(at) !== CENTRAL_SIGNATURE) {
    throw ambiguous('directory-malformed', `the central directory has no record at byte ${at} of ${directory.length}`);
  }
  const nameLength = directory.readUInt16LE(at + 28);
  const extraLength = directory.readUInt16LE(at + 30);
  const commentLength = directory.readUInt16LE(at + 32);
  const next = at + CENTRAL_BYTES + nameLength + extraLength + commentLength;
  if (next > directory.length) throw ambiguous('directory-malformed', `the central record at byte ${at} runs past the directory`);
  const rawName = directory.subarray(at + CENTRAL_BYTES, at + CENTRAL_BYTES + nameLength);
  const flags = directory.readUInt16LE(at + 8);
  const name = decodeName(rawName, flags);
  const record: CentralRecord = {
    name,
    rawName,
    versionMadeBy: directory.readUInt16LE(at + 4),
    versionNeeded: directory.readUInt16LE(at + 6),
    flags,
    method: directory.readUInt16LE(at + 10),
    crc32: directory.readUInt32LE(at + 16),
    compressedSize: directory.readUInt32LE(at + 20),
    uncompressedSize: directory.readUInt32LE(at + 24),
    externalAttributes: directory.readUInt32LE(at + 38),
    localOffset: directory.readUInt32LE(at + 42),
  };
  if (record.compressedSize === ZIP64_MARK_32 || record.uncompressedSize === ZIP64_MARK_32 || record.localOffset === ZIP64_MARK_32) {
    throw ambiguous('zip64', `the central record of ${quoted(name)} defers its sizes or offset to Zip64`, name);
  }
  if (directory.readUInt16LE(at + 34) !== 0) throw ambiguous('multi-disk', `${quoted(name)} starts on another disk`, name);
  checkExtra(directory.subarray(at + CENTRAL_BYTES + nameLength, at + CENTRAL_BYTES + nameLength + extraLength), name, 'central');
  checkComment(directory.subarray(next - commentLength, next), `the comment of ${quoted(name)}`, name);
  checkEntryKind(record);
  return { record, next };
}

function checkEntryKind(record: CentralRecord): void {
  const { name } = record;
  if (record.versionNeeded > MAX_VERSION_NEEDED) throw ambiguous('version-needed', `${quoted(name)} needs zip version ${record.versionNeeded / 10}; bundles need at most 2.0`, name);
  if ((record.flags & FLAG_ENCRYPTED) !== 0) throw ambiguous('flags', `${quoted(name)} is encrypted`, name);
  if ((record.flags & ~ALLOWED_FLAGS) !== 0) throw ambiguous('flags', `${quoted(name)} has general-purpose flags 0x${record.flags.toString(16)}; only data descriptor, deflate options and UTF-8 are accepted`, name);
  if (record.method !== STORED && record.method !== DEFLATED) throw ambiguous('method', `${quoted(name)} uses compression method ${record.method}; only stored (0) and deflate (8) are accepted`, name);
  if (record.method === STORED && (record.flags & FLAG_DESCRIPTOR) !== 0) throw ambiguous('flags', `${quoted(name)} is stored with a data descriptor: streaming readers must guess where its data ends`, name);
  if (record.method === STORED && record.compressedSize !== record.uncompressedSize) throw ambiguous('entry-data', `${quoted(name)} is stored but its sizes differ (${record.compressedSize} and ${record.uncompressedSize})`, name);
  if (name.endsWith('/') && (record.compressedSize !== 0 || record.uncompressedSize !== 0)) throw ambiguous('directory-with-data', `the directory entry ${quoted(name)} has data`, name);
}

async function readCentralDirectory(file: FileHandle, end: EndRecord): Promise<CentralRecord[]> {
  const directory = await readAt(file, end.directoryOffset, end.directorySize);
  const records: CentralRecord[] = [];
  const names = new Map<string, string>();
  let total = 0;
  let at = 0;
  for (let index = 0; index < end.entries; index++) {
    const { record, next } = parseCentral(directory, at);
    const key = collisionKey(record.name);
    const earlier = names.get(key);
    if (earlier !== undefined) {
      const how = earlier === record.name ? 'appears twice' : `and ${quoted(earlier)} are one file where case or Unicode normalisation do not count`;
      throw ambiguous('duplicate-name', `${quoted(record.name)} ${how}: which one an extractor keeps depends on the extractor`, record.name);
    }
    names.set(key, record.name);
    total += record.uncompressedSize;
    if (total > MAX_TOTAL_BYTES) throw tooLarge('expands-too-large', `the entries expand to more than ${MAX_TOTAL_BYTES} bytes`);
    records.push(record);
    at = next;
  }
  if (at !== directory.length) {
    throw ambiguous('entry-count-mismatch', `the end record counts ${end.entries} entries, which fill ${at} of the central directory's ${directory.length} bytes: readers that count and readers that read to the end see different entries`);
  }
  return records;
}

/** Local value v agrees with central c: equal, or zero when a data descriptor carries it. */
function agrees(local: number, central: number, descriptor: boolean): boolean {
  return local === central || (descriptor && local === 0);
}

/** Checks one local header against its central record; returns where its data starts. */
async function checkLocalHeader(file: FileHandle, record: CentralRecord, limit: number): Promise<number> {
  const { name, localOffset } = record;
  const header = await readAt(file, localOffset, LOCAL_BYTES);
  if (header.length < LOCAL_BYTES || localOffset + LOCAL_BYTES > limit || header.readUInt32LE(0) !== LOCAL_SIGNATURE) {
    throw ambiguous('local-header-mismatch', `no local header for ${quoted(name)} at ${localOffset}`, name);
  }
  const nameLength = header.readUInt16LE(26);
  const extraLength = header.readUInt16LE(28);
  const variable = await readAt(file, localOffset + LOCAL_BYTES, nameLength + extraLength);
  const descriptor = (record.flags & FLAG_DESCRIPTOR) !== 0;
  const mismatches = [
    header.readUInt16LE(4) !== record.versionNeeded && 'version needed',
    header.readUInt16LE(6) !== record.flags && 'flags',
    header.readUInt16LE(8) !== record.method && 'method',
    !agrees(header.readUInt32LE(14), record.crc32, descriptor) && 'CRC-32',
    !agrees(header.readUInt32LE(18), record.compressedSize, descriptor) && 'compressed size',
    !agrees(header.readUInt32LE(22), record.uncompressedSize, descriptor) && 'uncompressed size',
    (variable.length < nameLength || !variable.subarray(0, nameLength).equals(record.rawName)) && `name (${quoted(variable.subarray(0, nameLength).toString('latin1'))})`,
  ].filter((field): field is string => field !== false);
  if (mismatches.length > 0) throw ambiguous('local-header-mismatch', `the local header of ${quoted(name)} disagrees with its central record: ${mismatches.join(', ')}`, name);
  checkExtra(variable.subarray(nameLength), name, 'local');
  return localOffset + LOCAL_BYTES + nameLength + extraLength;
}

/** The length of the data descriptor at `at` that matches the record (with or without its signature). */
async function descriptorLength(file: FileHandle, record: CentralRecord, at: number, limit: number): Promise<number> {
  const bytes = await readAt(file, at, Math.min(DESCRIPTOR_BYTES + 4, Math.max(0, limit - at)));
  const matches = (from: number): boolean =>
    bytes.length >= from + DESCRIPTOR_BYTES &&
    bytes.readUInt32LE(from) === record.crc32 &&
    bytes.readUInt32LE(from + 4) === record.compressedSize &&
    bytes.readUInt32LE(from + 8) === record.uncompressedSize;
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === DESCRIPTOR_SIGNATURE && matches(4)) return DESCRIPTOR_BYTES + 4;
  if (matches(0)) return DESCRIPTOR_BYTES;
  throw ambiguous('descriptor-mismatch', `the data descriptor of ${quoted(record.name)} at ${at} does not repeat its central record's CRC-32 and sizes`, record.name);
}

/**
 * Checks the zip open at `file` and returns its entries in directory order.
 * Throws CtOpsError (see the module comment) at the first rule broken.
 */
export async function readZipStructure(file: FileHandle): Promise<ZipRecord[]> {
  const { size } = await file.stat();
  const end = await readEndRecord(file, size);
  const records = await readCentralDirectory(file, end);
  const dataOffsets = new Map<CentralRecord, number>();
  let expected = 0;
  for (const record of [...records].sort((a, b) => a.localOffset - b.localOffset)) {
    if (record.localOffset !== expected) {
      const reason = record.localOffset < expected ? 'overlap' : expected === 0 ? 'prefix' : 'gap';
      const what = reason === 'overlap' ? `starts at ${record.localOffset}, inside the entry before it (which ends at ${expected})` : reason === 'prefix' ? `starts at ${record.localOffset}: the zip has bytes before its first entry` : `starts at ${record.localOffset}, leaving unlisted bytes from ${expected}`;
      throw ambiguous(reason, `${quoted(record.name)} ${what}`, record.name);
    }
    const dataOffset = await checkLocalHeader(file, record, end.directoryOffset);
    const dataEnd = dataOffset + record.compressedSize;
    if (dataEnd > end.directoryOffset) throw ambiguous('overlap', `the data of ${quoted(record.name)} runs into the central directory`, record.name);
    expected = (record.flags & FLAG_DESCRIPTOR) !== 0 ? dataEnd + (await descriptorLength(file, record, dataEnd, end.directoryOffset)) : dataEnd;
    dataOffsets.set(record, dataOffset);
  }
  if (expected !== end.directoryOffset) {
    throw ambiguous(records.length === 0 ? 'prefix' : 'gap', `the entries end at ${expected} but the central directory starts at ${end.directoryOffset}: the bytes between belong to no listed entry`);
  }
  return records.map((central) => {
    const { rawName: _rawName, versionNeeded: _versionNeeded, ...record } = central;
    return { ...record, dataOffset: dataOffsets.get(central)! };
  });
}
