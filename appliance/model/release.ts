/*
 * The agent releases as workflows see them, whatever backend stores them (appliance/store/agent-releases.ts
 * maps rows to these).
 */

/** One file of an agent release as listed in its signed SHA256SUMS. */
export interface ReleaseFile {
  readonly name: string;
  readonly sha256: string;
  /** bytes */
  readonly size: number;
}

/** An agent release imported into the appliance (releases import). */
export interface AgentRelease {
  /** MAJOR.MINOR.PATCH, decimal, no pre-release part. */
  readonly version: string;
  /** Hex key id (minisign, 16 upper-case hex digits) of the release key whose signature was verified. */
  readonly keyId: string;
  /** The signature's trusted comment (signed): names the version and when/by which key it was signed. */
  readonly trustedComment: string;
  /** Every file of SHA256SUMS, sorted by name. */
  readonly files: readonly ReleaseFile[];
  /** ms since the epoch */
  readonly importedAt: number;
  readonly importedBy: string;
  /** ms since the epoch; null while the release may still be offered. */
  readonly retiredAt: number | null;
}

/** The lowest agent version an organisation accepts (`releases minimum`): hosts below it are offered it. */
export interface ReleaseMinimum {
  /** An imported release's version. */
  readonly version: string;
  /** ms since the epoch */
  readonly setAt: number;
  readonly setBy: string;
}
