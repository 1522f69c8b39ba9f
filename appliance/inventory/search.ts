import type { HostPackageRecord } from '../model/inventory.ts';
import type { Stores } from '../store/index.ts';
import { compareVersions } from './version-compare.ts';

export interface PackageSearch {
  /** The exact package name: no prefix or pattern matching (the name index is exact). */
  name: string;
  /** Inclusive bounds, in package-version order (compareVersions). */
  minVersion?: string;
  maxVersion?: string;
  includeRemoved?: boolean;
}

/**
 * The organisation's hosts (not deleted) that have (or, with includeRemoved, had) the package, ordered by
 * version then hostname. The range is filtered here, not in SQL: SQLite orders versions as text.
 */
export async function searchPackage(stores: Stores, orgId: string, search: PackageSearch): Promise<HostPackageRecord[]> {
  const { minVersion, maxVersion } = search;
  const records = await stores.softwareInventory.hostsWithPackage(search.name, { orgId, includeRemoved: search.includeRemoved ?? false });
  return records
    .filter((record) => (minVersion === undefined || compareVersions(record.version, minVersion) >= 0) && (maxVersion === undefined || compareVersions(record.version, maxVersion) <= 0))
    .sort((a, b) => compareVersions(a.version, b.version) || a.hostname.localeCompare(b.hostname) || a.hostId.localeCompare(b.hostId) || a.source.localeCompare(b.source));
}
