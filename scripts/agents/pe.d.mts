// Types of pe.mjs for the TypeScript tests.
export declare class PEFormatError extends Error {
  readonly code: 'ERR_PE_MALFORMED';
}
export declare function stripAuthenticode(input: Buffer): { buffer: Buffer; removed: boolean };
export declare function certificateTable(buffer: Buffer): { offset: number; size: number };
