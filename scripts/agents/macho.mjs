// Just enough of the 64-bit Mach-O format to give an injected darwin executable an
// empty code-signature slot (llvm-objcopy then fills it with an ad-hoc signature)
// and to find the signature again when checking it. Load commands are little-endian;
// the code-signing blobs they point at are big-endian (see macho-signature-check.mjs).
// Reference: <mach-o/loader.h>.

export const MH_MAGIC_64 = 0xfeedfacf;
export const MH_EXECUTE = 0x2;
export const LC_SEGMENT_64 = 0x19;
export const LC_CODE_SIGNATURE = 0x1d;
const MACH_HEADER_64_SIZE = 32;
const LINKEDIT_DATA_COMMAND_SIZE = 16;
const SEGMENT_COMMAND_64_SIZE = 72;
const SECTION_64_SIZE = 80;

export class MachOFormatError extends Error {
  code = 'ERR_MACHO_MALFORMED';
}

function segmentName(buffer, offset) {
  const raw = buffer.subarray(offset, offset + 16);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? 16 : end).toString('latin1');
}

/**
 * The header fields and load commands of a thin 64-bit little-endian Mach-O
 * executable. Universal (fat) files are not handled: Node ships one file per arch.
 */
export function parseMachO(buffer) {
  if (buffer.length < MACH_HEADER_64_SIZE || buffer.readUInt32LE(0) !== MH_MAGIC_64) {
    throw new MachOFormatError('not a thin 64-bit little-endian Mach-O file');
  }
  const header = {
    cputype: buffer.readUInt32LE(4),
    filetype: buffer.readUInt32LE(12),
    ncmds: buffer.readUInt32LE(16),
    sizeofcmds: buffer.readUInt32LE(20),
  };
  if (header.filetype !== MH_EXECUTE) throw new MachOFormatError(`file type ${header.filetype} is not an executable`);
  if (MACH_HEADER_64_SIZE + header.sizeofcmds > buffer.length) throw new MachOFormatError('load commands run past the end of the file');
  const commands = [];
  const segments = [];
  let codeSignature;
  let offset = MACH_HEADER_64_SIZE;
  for (let index = 0; index < header.ncmds; index++) {
    const cmd = buffer.readUInt32LE(offset);
    const cmdsize = buffer.readUInt32LE(offset + 4);
    if (cmdsize < 8 || offset + cmdsize > MACH_HEADER_64_SIZE + header.sizeofcmds) throw new MachOFormatError(`load command ${index} is malformed`);
    commands.push({ cmd, cmdsize, offset });
    if (cmd === LC_SEGMENT_64) {
      const nsects = buffer.readUInt32LE(offset + 64);
      const sections = [];
      for (let s = 0; s < nsects; s++) {
        const at = offset + SEGMENT_COMMAND_64_SIZE + s * SECTION_64_SIZE;
        sections.push({ name: segmentName(buffer, at), size: Number(buffer.readBigUInt64LE(at + 40)), fileoff: buffer.readUInt32LE(at + 48) });
      }
      segments.push({
        name: segmentName(buffer, offset + 8),
        commandOffset: offset,
        vmaddr: buffer.readBigUInt64LE(offset + 24),
        vmsize: buffer.readBigUInt64LE(offset + 32),
        fileoff: Number(buffer.readBigUInt64LE(offset + 40)),
        filesize: Number(buffer.readBigUInt64LE(offset + 48)),
        sections,
      });
    } else if (cmd === LC_CODE_SIGNATURE) {
      codeSignature = { commandOffset: offset, dataoff: buffer.readUInt32LE(offset + 8), datasize: buffer.readUInt32LE(offset + 12) };
    }
    offset += cmdsize;
  }
  return { header, commands, segments, codeSignature, loadCommandsEnd: offset };
}

/** The file offset of the first section's contents: load commands must end before it. */
function firstContentOffset(macho) {
  const offsets = macho.segments.flatMap((segment) => segment.sections.filter((section) => section.size > 0 && section.fileoff > 0).map((section) => section.fileoff));
  return Math.min(...offsets);
}

/**
 * Appends an LC_CODE_SIGNATURE load command pointing at an empty signature at the
 * 16-byte-aligned end of __LINKEDIT, as ld64 lays it out. llvm-objcopy (LLVM ≥ 13)
 * sizes and writes an ad-hoc signature into any executable that has this command.
 * Returns a new buffer; throws when the file already has one or has no room.
 */
export function addCodeSignatureSlot(buffer) {
  const macho = parseMachO(buffer);
  if (macho.codeSignature) throw new MachOFormatError('the file already has LC_CODE_SIGNATURE');
  const linkedit = macho.segments.find((segment) => segment.name === '__LINKEDIT');
  if (!linkedit) throw new MachOFormatError('no __LINKEDIT segment');
  if (linkedit.fileoff + linkedit.filesize !== buffer.length) throw new MachOFormatError('__LINKEDIT does not end the file');
  if (macho.loadCommandsEnd + LINKEDIT_DATA_COMMAND_SIZE > firstContentOffset(macho)) throw new MachOFormatError('no room for another load command');

  const dataoff = Math.ceil(buffer.length / 16) * 16;
  const output = Buffer.alloc(dataoff);
  buffer.copy(output);
  const at = macho.loadCommandsEnd;
  output.writeUInt32LE(LC_CODE_SIGNATURE, at);
  output.writeUInt32LE(LINKEDIT_DATA_COMMAND_SIZE, at + 4);
  output.writeUInt32LE(dataoff, at + 8);
  output.writeUInt32LE(0, at + 12);
  output.writeUInt32LE(macho.header.ncmds + 1, 16);
  output.writeUInt32LE(macho.header.sizeofcmds + LINKEDIT_DATA_COMMAND_SIZE, 20);
  output.writeBigUInt64LE(BigInt(dataoff - linkedit.fileoff), linkedit.commandOffset + 48);
  return output;
}
