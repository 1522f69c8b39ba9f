// Removes the Authenticode signature of a PE (Windows) executable. The Node base
// binary is signed by the Node.js project; injecting the SEA blob changes the file,
// so the signature no longer matches and Windows would report a tampered file
// instead of an unsigned one. postject (LIEF) rewrites .rsrc but leaves the
// certificate-table directory entry behind, pointing at bytes that are no longer a
// certificate. Reference: Microsoft PE format, "The Attribute Certificate Table".
//
// Real signing is optional and done afterwards, e.g. with osslsigncode:
//   osslsigncode sign -pkcs12 release.pfx -h sha256 -t http://timestamp.example \
//     -in ct-ops-agent-windows-x64.exe -out ct-ops-agent-windows-x64.signed.exe
// (then rebuild SHA256SUMS and its signature over the signed files).

const IMAGE_DIRECTORY_ENTRY_SECURITY = 4;
const PE32_MAGIC = 0x10b;
const PE32_PLUS_MAGIC = 0x20b;

export class PEFormatError extends Error {
  code = 'ERR_PE_MALFORMED';
}

function layout(buffer) {
  if (buffer.length < 0x40 || buffer.toString('latin1', 0, 2) !== 'MZ') throw new PEFormatError('not an MZ/PE file');
  const pe = buffer.readUInt32LE(0x3c);
  if (pe + 24 > buffer.length || buffer.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new PEFormatError('no PE signature');
  const sectionCount = buffer.readUInt16LE(pe + 6);
  const optionalHeaderSize = buffer.readUInt16LE(pe + 20);
  const optional = pe + 24;
  const magic = buffer.readUInt16LE(optional);
  if (magic !== PE32_MAGIC && magic !== PE32_PLUS_MAGIC) throw new PEFormatError(`unknown optional header magic 0x${magic.toString(16)}`);
  const directoryCountOffset = optional + (magic === PE32_PLUS_MAGIC ? 108 : 92);
  const directories = directoryCountOffset + 4;
  const directoryCount = buffer.readUInt32LE(directoryCountOffset);
  const sections = optional + optionalHeaderSize;
  let endOfSections = 0;
  for (let index = 0; index < sectionCount; index++) {
    const header = sections + index * 40;
    endOfSections = Math.max(endOfSections, buffer.readUInt32LE(header + 20) + buffer.readUInt32LE(header + 16));
  }
  return { checksumOffset: optional + 64, securityEntry: directoryCount > IMAGE_DIRECTORY_ENTRY_SECURITY ? directories + IMAGE_DIRECTORY_ENTRY_SECURITY * 8 : undefined, endOfSections };
}

/** The PE image checksum (as IMAGEHLP's CheckSumMappedFile computes it). */
function peChecksum(buffer, checksumOffset) {
  let sum = 0;
  for (let offset = 0; offset < buffer.length; offset += 2) {
    if (offset === checksumOffset || offset === checksumOffset + 2) continue;
    const word = offset + 1 < buffer.length ? buffer.readUInt16LE(offset) : buffer[offset];
    sum += word;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum + buffer.length) >>> 0;
}

/**
 * Returns the executable without its certificate table: the directory entry zeroed,
 * the certificate bytes cut off when they end the file, the image checksum updated.
 * `removed` says whether there was a certificate entry at all.
 */
export function stripAuthenticode(input) {
  const { checksumOffset, securityEntry, endOfSections } = layout(input);
  if (securityEntry === undefined) return { buffer: input, removed: false };
  const certificateOffset = input.readUInt32LE(securityEntry);
  const certificateSize = input.readUInt32LE(securityEntry + 4);
  if (certificateOffset === 0 && certificateSize === 0) return { buffer: input, removed: false };

  const certificateEndsFile = certificateOffset >= endOfSections && certificateOffset + certificateSize === input.length;
  const buffer = Buffer.from(certificateEndsFile ? input.subarray(0, certificateOffset) : input);
  buffer.writeUInt32LE(0, securityEntry);
  buffer.writeUInt32LE(0, securityEntry + 4);
  buffer.writeUInt32LE(peChecksum(buffer, checksumOffset), checksumOffset);
  return { buffer, removed: true };
}

/** The certificate-table entry of a PE file (zeros when unsigned). */
export function certificateTable(buffer) {
  const { securityEntry } = layout(buffer);
  if (securityEntry === undefined) return { offset: 0, size: 0 };
  return { offset: buffer.readUInt32LE(securityEntry), size: buffer.readUInt32LE(securityEntry + 4) };
}
