// Types of macho-signature-check.mjs for the TypeScript tests.
export type MachOSignatureErrorCode = 'ERR_MACHO_UNSIGNED' | 'ERR_MACHO_SIGNATURE_MALFORMED' | 'ERR_MACHO_SIGNATURE_MISMATCH';

export declare class MachOSignatureError extends Error {
  readonly code: MachOSignatureErrorCode;
  constructor(code: MachOSignatureErrorCode, message: string);
}

export interface MachOSignature {
  identifier: string;
  flags: number;
  adhoc: boolean;
  linkerSigned: boolean;
  hashAlgorithm: string;
  pageSize: number;
  pages: number;
  codeLimit: number;
  cputype: number;
}

export declare function verifyMachOSignature(file: Buffer): MachOSignature;
