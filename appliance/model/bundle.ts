import type { Tags } from './enrolment.ts';

/** Which enrolment token a bundle embeds: one made for it, one the operator held, or none. */
export type BundleTokenMode = 'new' | 'existing' | 'none';

/**
 * An install bundle as recorded when it was built (migration 026): what went into it and the
 * fingerprints an operator compares at the transfer station. Times are ms since the epoch.
 */
export interface InstallBundleInput {
  /** bnd_… */
  id: string;
  orgId: string;
  createdAt: number;
  /** The admin (API, console) or user name (`ct-ops-bundle build --created-by`) who built it. */
  createdBy: string;
  os: string;
  arch: string;
  agentVersion: string;
  /** The ingest targets in agent.toml, in the order agents try them. */
  addresses: string[];
  tags: Tags;
  label: string;
  tokenMode: BundleTokenMode;
  /** The embedded token; null for token mode none. */
  tokenId: string | null;
  /** The zip's file name, its size in bytes and its lower-case hex SHA-256. */
  zipFile: string;
  zipSize: number;
  zipSha256: string;
  /** The minisign key id of the bundle signing key, and the appliance CA's fingerprint, as the README lists them. */
  bundleKeyId: string;
  caFingerprint: string;
}

export interface InstallBundle extends InstallBundleInput {
  /** When and by whom it was withdrawn (its requester could not take it); null while it stands. */
  withdrawnAt: number | null;
  withdrawnBy: string | null;
}

/** The hosts that claimed a bundle (hosts.install_bundle_id), deleted ones included, and the newest of them. */
export interface BundleHosts {
  enrolled: number;
  last: { hostId: string; hostname: string; enrolledAt: number } | undefined;
}

/** A recorded bundle with the hosts enrolled from it: a row of the bundles list. */
export interface InstallBundleRecord {
  bundle: InstallBundle;
  hosts: BundleHosts;
}
