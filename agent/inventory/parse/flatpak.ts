import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { lines } from './text.ts';

/** The columns asked of `flatpak list --app`, printed tab-separated when not on a terminal. */
export const FLATPAK_COLUMNS = 'application,version,branch,arch';

/**
 * Apps from `flatpak list --app --columns=FLATPAK_COLUMNS`; an app without a version is named by
 * its branch (and has an empty one without either). A line without the four columns is skipped and counted.
 */
export function parseFlatpakList(text: string): ParsedPackages {
  const records = new PackageRecords('flatpak');
  for (const { line, at } of lines(text)) {
    const fields = line.split('\t');
    if (fields.length !== 4) {
      records.unreadable(at, line);
      continue;
    }
    const [application, version, branch, arch] = fields.map((field) => field.trim()) as [string, string, string, string];
    records.add(softwarePackage({ name: application, version: version || branch, architecture: arch, source: 'flatpak' }));
  }
  return records.done();
}
