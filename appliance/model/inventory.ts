import type { SkippedPackages } from '../../common/inventory-records.ts';

/**
 * What one host may keep, whatever its agent sends (issue 8, item 5: one host must not fill the
 * disk). A scan of more packages is refused and leaves nothing; live rows allow one full scan
 * replacing another (every package upgraded); removed rows beyond the cap go oldest first.
 * Worst case per host: 60,000 rows of at most ~1.4 KB of text each.
 */
export const HOST_INVENTORY_LIMITS = {
  packagesPerScan: 20_000,
  livePackages: 40_000,
  removedPackages: 20_000,
  /** Scan records kept per host, newest first (software_scans.seq); older ones go when a scan completes. */
  scans: 100,
} as const;

/** Where a scan is in its lifecycle (appliance/inventory/scan-states.ts says what moves it). */
export type ScanStatus = 'receiving' | 'completed' | 'failed' | 'abandoned';

export interface SoftwareScan {
  /** Insertion order of scans (the per-host cap goes by it). */
  seq: number;
  id: string;
  hostId: string;
  /** The inventory task that asked for the scan; '' for a scan nobody asked for. */
  taskId: string;
  /** Times are milliseconds since the epoch. */
  startedAt: number;
  updatedAt: number;
  completedAt: number | null;
  status: ScanStatus;
  chunks: number;
  packagesReceived: number;
  added: number;
  removed: number;
  unchanged: number;
  /** Packages received but not stored, by reason (common/inventory-records.ts); they count in packagesReceived. */
  skipped: SkippedPackages[];
  /** The catalogue code that closed a failed or abandoned scan. */
  errorCode: string | null;
}

/** A package as validated from the wire; installDate is Unix seconds or null. */
export interface PackageInput {
  name: string;
  version: string;
  source: string;
  architecture: string;
  publisher: string;
  installDate: number | null;
}

/** A package of a host as recorded; times are milliseconds since the epoch. */
export interface SoftwarePackageRecord extends PackageInput {
  hostId: string;
  firstSeen: number;
  lastSeen: number;
  isRemoved: boolean;
  removedAt: number | null;
}

/** A package record with the hostname of its host, as "which hosts have X" answers. */
export interface HostPackageRecord extends SoftwarePackageRecord {
  hostname: string;
}

/** One chunk of a scan as the store records it (validated by appliance/inventory/chunk.ts). */
export interface ChunkInput {
  scanId: string;
  hostId: string;
  /** Recorded when chunk 0 starts the scan. */
  taskId: string;
  chunkIndex: number;
  packages: readonly PackageInput[];
  /** The chunk's packages that cannot be stored, by reason: counted with the scan, not written. */
  skipped?: readonly SkippedPackages[];
  isLast: boolean;
  now: number;
  /** When the scan completes, the host's packages removed longer ago than this (ms) are deleted; absent: kept. */
  removedRetentionMs?: number;
}

export interface ChunkResult {
  /** Packages new to the host, or back after having been marked removed. */
  added: number;
  /** Packages the host already had. */
  unchanged: number;
  /** Repeats of a package already seen by this scan (same name, version, source, architecture). */
  duplicates: number;
  /** The scan after this chunk; completed when the chunk was the last. */
  scan: SoftwareScan;
}
