#!/usr/bin/env node
// Checks the embedded code signature of a 64-bit Mach-O executable the way the macOS
// kernel checks pages at load time, so a darwin agent signed on Linux can be trusted
// to start on Apple silicon without a Mac in the build: LC_CODE_SIGNATURE → SuperBlob
// (0xfade0cc0) → CodeDirectory (0xfade0c02) → one hash per page of the file up to
// the signature, each recomputed here; special slots must match the blobs they name.
// Blob formats: Apple's <kern/cs_blobs.h> (xnu) and codesign(1).
//
//   node scripts/agents/macho-signature-check.mjs <file>...   exit 0 when all verify
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MachOFormatError, parseMachO } from './macho.mjs';

const CSMAGIC_EMBEDDED_SIGNATURE = 0xfade0cc0;
const CSMAGIC_CODEDIRECTORY = 0xfade0c02;
const CSSLOT_CODEDIRECTORY = 0;
const CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000;
const CS_ADHOC = 0x2;
const CS_LINKER_SIGNED = 0x20000;
const SUPPORTS_CODELIMIT64 = 0x20300;
const HASH_TYPES = {
  1: { algorithm: 'sha1', size: 20 },
  2: { algorithm: 'sha256', size: 32 },
  3: { algorithm: 'sha256', size: 20 }, // SHA-256 truncated to 20 bytes
  4: { algorithm: 'sha384', size: 48 },
};

export class MachOSignatureError extends Error {
  /** @param {'ERR_MACHO_UNSIGNED' | 'ERR_MACHO_SIGNATURE_MALFORMED' | 'ERR_MACHO_SIGNATURE_MISMATCH'} code */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function malformed(why) {
  return new MachOSignatureError('ERR_MACHO_SIGNATURE_MALFORMED', `code signature is malformed: ${why}`);
}

function readBlobIndex(signature) {
  if (signature.length < 12 || signature.readUInt32BE(0) !== CSMAGIC_EMBEDDED_SIGNATURE) throw malformed('no embedded-signature SuperBlob');
  const length = signature.readUInt32BE(4);
  const count = signature.readUInt32BE(8);
  if (length > signature.length || 12 + count * 8 > length) throw malformed('SuperBlob length or count out of range');
  const blobs = new Map();
  for (let index = 0; index < count; index++) {
    const type = signature.readUInt32BE(12 + index * 8);
    const offset = signature.readUInt32BE(16 + index * 8);
    if (offset + 8 > length) throw malformed(`blob ${type} starts outside the SuperBlob`);
    const blobLength = signature.readUInt32BE(offset + 4);
    if (blobLength < 8 || offset + blobLength > length) throw malformed(`blob ${type} runs outside the SuperBlob`);
    blobs.set(type, signature.subarray(offset, offset + blobLength));
  }
  return blobs;
}

function checkCodeDirectory(file, codeDirectory, signatureOffset, blobs) {
  if (codeDirectory.length < 44 || codeDirectory.readUInt32BE(0) !== CSMAGIC_CODEDIRECTORY) throw malformed('not a CodeDirectory');
  const version = codeDirectory.readUInt32BE(8);
  const flags = codeDirectory.readUInt32BE(12);
  const hashOffset = codeDirectory.readUInt32BE(16);
  const identOffset = codeDirectory.readUInt32BE(20);
  const nSpecialSlots = codeDirectory.readUInt32BE(24);
  const nCodeSlots = codeDirectory.readUInt32BE(28);
  let codeLimit = codeDirectory.readUInt32BE(32);
  const hashSize = codeDirectory.readUInt8(36);
  const hashType = HASH_TYPES[codeDirectory.readUInt8(37)];
  const pageSizeLog2 = codeDirectory.readUInt8(39);
  if (version >= SUPPORTS_CODELIMIT64 && codeDirectory.length >= 64) {
    const codeLimit64 = Number(codeDirectory.readBigUInt64BE(56));
    if (codeLimit64 !== 0) codeLimit = codeLimit64;
  }
  if (!hashType || hashType.size !== hashSize) throw malformed(`unsupported hash type ${codeDirectory.readUInt8(37)} of size ${hashSize}`);
  if (hashOffset < nSpecialSlots * hashSize || hashOffset + nCodeSlots * hashSize > codeDirectory.length) throw malformed('hash slots outside the CodeDirectory');
  const identEnd = codeDirectory.indexOf(0, identOffset);
  if (identOffset >= codeDirectory.length || identEnd === -1) throw malformed('identifier outside the CodeDirectory');
  const identifier = codeDirectory.subarray(identOffset, identEnd).toString('utf8');

  if (codeLimit !== signatureOffset) {
    throw new MachOSignatureError('ERR_MACHO_SIGNATURE_MISMATCH', `the signature covers ${codeLimit} bytes but the code runs to ${signatureOffset}`);
  }
  const pageSize = pageSizeLog2 === 0 ? codeLimit : 2 ** pageSizeLog2;
  const expectedSlots = Math.ceil(codeLimit / pageSize);
  if (nCodeSlots !== expectedSlots) throw new MachOSignatureError('ERR_MACHO_SIGNATURE_MISMATCH', `${nCodeSlots} page hashes for ${expectedSlots} pages`);

  const digest = (data) => createHash(hashType.algorithm).update(data).digest().subarray(0, hashSize);
  for (let page = 0; page < nCodeSlots; page++) {
    const start = page * pageSize;
    const actual = digest(file.subarray(start, Math.min(start + pageSize, codeLimit)));
    const stored = codeDirectory.subarray(hashOffset + page * hashSize, hashOffset + (page + 1) * hashSize);
    if (!actual.equals(stored)) {
      throw new MachOSignatureError('ERR_MACHO_SIGNATURE_MISMATCH', `page ${page} (bytes ${start}–${Math.min(start + pageSize, codeLimit) - 1}) does not match its hash`);
    }
  }
  // Special slots count down from the code hashes: slot k names the blob of type k.
  for (let slot = 1; slot <= nSpecialSlots; slot++) {
    const stored = codeDirectory.subarray(hashOffset - slot * hashSize, hashOffset - (slot - 1) * hashSize);
    const blob = blobs.get(slot);
    const expected = blob ? digest(blob) : Buffer.alloc(hashSize);
    if (!stored.equals(expected)) throw new MachOSignatureError('ERR_MACHO_SIGNATURE_MISMATCH', `special slot ${slot} does not match ${blob ? `blob ${slot}` : 'an absent blob'}`);
  }
  return { identifier, flags, adhoc: (flags & CS_ADHOC) !== 0, linkerSigned: (flags & CS_LINKER_SIGNED) !== 0, hashAlgorithm: hashType.algorithm, pageSize, pages: nCodeSlots, codeLimit };
}

/**
 * Verifies the embedded code signature of a Mach-O executable given as its bytes.
 * Returns what the CodeDirectory says; throws MachOSignatureError (or MachOFormatError
 * for a file that is not a 64-bit Mach-O executable) naming the first problem found.
 */
export function verifyMachOSignature(file) {
  const macho = parseMachO(file);
  if (!macho.codeSignature || macho.codeSignature.datasize === 0) throw new MachOSignatureError('ERR_MACHO_UNSIGNED', 'the file has no code signature');
  const { dataoff, datasize } = macho.codeSignature;
  if (dataoff + datasize > file.length) throw malformed('LC_CODE_SIGNATURE points past the end of the file');
  if (dataoff + datasize !== file.length) throw malformed('data follows the code signature (codesign rejects this)');
  const linkedit = macho.segments.find((segment) => segment.name === '__LINKEDIT');
  if (!linkedit || dataoff < linkedit.fileoff || dataoff + datasize > linkedit.fileoff + linkedit.filesize) throw malformed('the signature is not inside __LINKEDIT');

  const blobs = readBlobIndex(file.subarray(dataoff, dataoff + datasize));
  const primary = blobs.get(CSSLOT_CODEDIRECTORY);
  if (!primary) throw malformed('no CodeDirectory');
  const result = checkCodeDirectory(file, primary, dataoff, blobs);
  for (const [type, blob] of blobs) {
    if (type >= CSSLOT_ALTERNATE_CODEDIRECTORIES && type < CSSLOT_ALTERNATE_CODEDIRECTORIES + 5) checkCodeDirectory(file, blob, dataoff, blobs);
  }
  return { ...result, cputype: macho.header.cputype };
}

async function main(paths) {
  if (paths.length === 0 || paths.includes('--help') || paths.includes('-h')) {
    process.stdout.write('Usage: macho-signature-check.mjs <mach-o file>...\nVerifies every page hash of each file\'s embedded code signature. Exit 0: all valid; 1: one is not.\n');
    return paths.length === 0 ? 64 : 0;
  }
  let failed = 0;
  for (const path of paths) {
    try {
      const result = verifyMachOSignature(readFileSync(path));
      process.stdout.write(`${path}: valid ${result.adhoc ? 'ad-hoc ' : ''}signature "${result.identifier}", ${result.pages} pages of ${result.pageSize} bytes (${result.hashAlgorithm})\n`);
    } catch (error) {
      if (!(error instanceof MachOSignatureError || error instanceof MachOFormatError)) throw error;
      process.stderr.write(`${path}: ${error.code}: ${error.message}\n`);
      failed++;
    }
  }
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
