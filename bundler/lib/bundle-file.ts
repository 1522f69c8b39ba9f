import { sha256Hex } from './sha256sums.ts';

export type FileMode = 0o644 | 0o755;

/** One file of a bundle, its digest computed once (executables are large). */
export interface BundleFile {
  /** Name inside the top folder. */
  readonly name: string;
  readonly data: Buffer;
  readonly mode: FileMode;
  readonly sha256: string;
}

export function bundleFile(name: string, data: Buffer, mode: FileMode, sha256: string = sha256Hex(data)): BundleFile {
  return { name, data, mode, sha256 };
}
