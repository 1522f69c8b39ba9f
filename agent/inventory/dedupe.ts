import type { SoftwarePackage } from './package.ts';

/**
 * Drops exact repeats: the same name, version, architecture, publisher and source (macOS
 * lists an app once per copy on disk). Entries that differ in architecture or publisher are
 * kept, since they are different installations (dpkg multi-arch, 32- and 64-bit Windows
 * programs), so (name, version, source) alone may still repeat and the ingest side must
 * tolerate that (it counts them `duplicate`). The first entry's install date is kept; the first
 * repeat's name is `firstRemoved`.
 */
export function dedupePackages(packages: readonly SoftwarePackage[]): { packages: SoftwarePackage[]; removed: number; firstRemoved?: string } {
  const seen = new Set<string>();
  const unique: SoftwarePackage[] = [];
  let firstRemoved: string | undefined;
  for (const entry of packages) {
    const key = JSON.stringify([entry.name, entry.version, entry.architecture, entry.publisher, entry.source]);
    if (seen.has(key)) {
      firstRemoved ??= entry.name;
      continue;
    }
    seen.add(key);
    unique.push(entry);
  }
  return { packages: unique, removed: packages.length - unique.length, ...(firstRemoved !== undefined ? { firstRemoved } : {}) };
}
