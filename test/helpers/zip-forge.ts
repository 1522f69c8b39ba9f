/**
 * Test support only: writes zips byte by byte (APPNOTE 6.3.10, sections 4.3.7–4.3.16)
 * so tests can build what no well-behaved writer produces — headers that disagree,
 * gaps, overlaps, second directories and end records. Every knob defaults to what a
 * correct writer does, so an unmodified spec is a valid zip.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export const LOCAL_SIGNATURE = 0x04034b50;
export const CENTRAL_SIGNATURE = 0x02014b50;
export const END_SIGNATURE = 0x06054b50;
export const DESCRIPTOR_SIGNATURE = 0x08074b50;
export const FLAG_DESCRIPTOR = 0x0008;
export const FLAG_UTF8 = 0x0800;
const MADE_ON_UNIX = (3 << 8) | 20;

export interface HeaderFields {
  readonly name: string | Buffer;
  readonly versionNeeded: number;
  readonly flags: number;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly extra: Buffer;
}

export interface EntrySpec {
  readonly name: string | Buffer;
  readonly data?: Buffer;
  /** st_mode written to the external attributes; 0o100644 unless given. */
  readonly mode?: number;
  /** Deflate (the default) or store the data. */
  readonly deflate?: boolean;
  /** Sets flag bit 3, zeroes CRC and sizes in the local header and writes a signed descriptor after the data. */
  readonly descriptor?: boolean;
  /** The bytes written as the entry's data, instead of the data compressed. */
  readonly rawData?: Buffer;
  /** The data descriptor written, instead of the correct one. */
  readonly descriptorBytes?: Buffer;
  /** Fields of both headers, replacing the computed ones. */
  readonly both?: Partial<HeaderFields>;
  /** Fields of the local header only. */
  readonly local?: Partial<HeaderFields>;
  /** Fields of the central record only. */
  readonly central?: Partial<HeaderFields>;
}

export interface ForgedEntry {
  /** Local header, data and any data descriptor. */
  readonly local: Buffer;
  /** The central record, pointing at a local header `offset` bytes into the file. */
  central(offset: number): Buffer;
}

const nameBytes = (name: string | Buffer): Buffer => (typeof name === 'string' ? Buffer.from(name, 'utf8') : name);

/** One extra field: id, length, body. */
export function extraField(id: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(id, 0);
  head.writeUInt16LE(body.length, 2);
  return Buffer.concat([head, body]);
}

export function forgeEntry(spec: EntrySpec): ForgedEntry {
  const data = spec.data ?? Buffer.alloc(0);
  const deflate = spec.deflate ?? true;
  const stored = spec.rawData ?? (deflate ? deflateRawSync(data) : data);
  const truth: HeaderFields = {
    name: spec.name,
    versionNeeded: 20,
    flags: spec.descriptor ? FLAG_DESCRIPTOR : 0,
    method: deflate ? 8 : 0,
    crc32: crc32(data),
    compressedSize: stored.length,
    uncompressedSize: data.length,
    extra: Buffer.alloc(0),
    ...spec.both,
  };
  const inLocal: HeaderFields = { ...truth, ...(spec.descriptor ? { crc32: 0, compressedSize: 0, uncompressedSize: 0 } : {}), ...spec.local };
  const inCentral: HeaderFields = { ...truth, ...spec.central };
  const localName = nameBytes(inLocal.name);
  const head = Buffer.alloc(30);
  head.writeUInt32LE(LOCAL_SIGNATURE, 0);
  head.writeUInt16LE(inLocal.versionNeeded, 4);
  head.writeUInt16LE(inLocal.flags, 6);
  head.writeUInt16LE(inLocal.method, 8);
  head.writeUInt16LE(0, 10);
  head.writeUInt16LE(0x5a21, 12);
  head.writeUInt32LE(inLocal.crc32, 14);
  head.writeUInt32LE(inLocal.compressedSize, 18);
  head.writeUInt32LE(inLocal.uncompressedSize, 22);
  head.writeUInt16LE(localName.length, 26);
  head.writeUInt16LE(inLocal.extra.length, 28);
  const descriptor = Buffer.alloc(spec.descriptor ? 16 : 0);
  if (spec.descriptor) {
    descriptor.writeUInt32LE(DESCRIPTOR_SIGNATURE, 0);
    descriptor.writeUInt32LE(truth.crc32, 4);
    descriptor.writeUInt32LE(truth.compressedSize, 8);
    descriptor.writeUInt32LE(truth.uncompressedSize, 12);
  }
  const local = Buffer.concat([head, localName, inLocal.extra, stored, spec.descriptorBytes ?? descriptor]);
  return {
    local,
    central(offset) {
      const name = nameBytes(inCentral.name);
      const record = Buffer.alloc(46);
      record.writeUInt32LE(CENTRAL_SIGNATURE, 0);
      record.writeUInt16LE(MADE_ON_UNIX, 4);
      record.writeUInt16LE(inCentral.versionNeeded, 6);
      record.writeUInt16LE(inCentral.flags, 8);
      record.writeUInt16LE(inCentral.method, 10);
      record.writeUInt16LE(0, 12);
      record.writeUInt16LE(0x5a21, 14);
      record.writeUInt32LE(inCentral.crc32, 16);
      record.writeUInt32LE(inCentral.compressedSize, 20);
      record.writeUInt32LE(inCentral.uncompressedSize, 24);
      record.writeUInt16LE(name.length, 28);
      record.writeUInt16LE(inCentral.extra.length, 30);
      record.writeUInt32LE(((spec.mode ?? 0o100644) << 16) >>> 0, 38);
      record.writeUInt32LE(offset, 42);
      return Buffer.concat([record, name, inCentral.extra]);
    },
  };
}

export interface EndFields {
  readonly entries: number;
  readonly directorySize: number;
  readonly directoryOffset: number;
  readonly comment?: Buffer;
  readonly commentLength?: number;
}

export function endRecord(fields: EndFields): Buffer {
  const comment = fields.comment ?? Buffer.alloc(0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_SIGNATURE, 0);
  end.writeUInt16LE(fields.entries, 8);
  end.writeUInt16LE(fields.entries, 10);
  end.writeUInt32LE(fields.directorySize, 12);
  end.writeUInt32LE(fields.directoryOffset, 16);
  end.writeUInt16LE(fields.commentLength ?? comment.length, 20);
  return Buffer.concat([end, comment]);
}

export interface ZipLayout {
  /** Bytes before the first entry; offsets account for them. */
  readonly prefix?: Buffer;
  /** Bytes inserted after the entry at this index. */
  readonly gap?: { readonly after: number; readonly bytes: Buffer };
  /** Central records added after the real ones: [index of the entry whose local header they point at, the record's spec]. */
  readonly extraCentral?: ReadonlyArray<readonly [number, EntrySpec]>;
  readonly comment?: Buffer;
}

/** A whole zip: local entries in order, their central directory, the end record. */
export function forgeZip(specs: readonly EntrySpec[], layout: ZipLayout = {}): Buffer {
  const parts: Buffer[] = layout.prefix ? [layout.prefix] : [];
  let position = layout.prefix?.length ?? 0;
  const offsets: number[] = [];
  const forged = specs.map(forgeEntry);
  forged.forEach((entry, index) => {
    offsets.push(position);
    parts.push(entry.local);
    position += entry.local.length;
    if (layout.gap?.after === index) {
      parts.push(layout.gap.bytes);
      position += layout.gap.bytes.length;
    }
  });
  const records = [...forged.map((entry, index) => entry.central(offsets[index]!)), ...(layout.extraCentral ?? []).map(([index, spec]) => forgeEntry(spec).central(offsets[index]!))];
  const directory = Buffer.concat(records);
  return Buffer.concat([...parts, directory, endRecord({ entries: records.length, directorySize: directory.length, directoryOffset: position, ...(layout.comment ? { comment: layout.comment } : {}) })]);
}
