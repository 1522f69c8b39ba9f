// Types of macho.mjs for the TypeScript tests.
export declare class MachOFormatError extends Error {
  readonly code: 'ERR_MACHO_MALFORMED';
}
export declare function addCodeSignatureSlot(buffer: Buffer): Buffer;
