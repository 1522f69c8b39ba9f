import type { SigningKey } from '../../common/minisign.ts';

/** Writes SHA256SUMS, SHA256SUMS.minisig and release.pub into dir for the given files. */
export declare function writeReleaseFiles(options: {
  dir: string;
  files: readonly string[];
  key: SigningKey;
  version: string;
  keyLabel: string;
  date?: Date;
}): Promise<{ sums: string; trustedComment: string }>;
