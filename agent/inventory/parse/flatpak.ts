import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';

/** The columns asked of `flatpak list --app`, printed tab-separated when not on a terminal. */
export const FLATPAK_COLUMNS = 'application,version,branch,arch';

/**
 * Apps from `flatpak list --app --columns=FLATPAK_COLUMNS`; an app without a version is named by
 * its branch (and has an empty one without either). A line without the four columns is skipped and counted.
 */
export function parseFlatpakList(text: string): ParsedPackages {
  const records = new PackageRecords('flatpak');
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '') return;
    const fields = line.split('\t');
    if (fields.length !== 4) return records.unreadable(index + 1, line);
    const [application, version, branch, arch] = fields.map((field) => field.trim()) as [string, string, string, string];
    records.add(softwarePackage({ name: application, version: version || branch, architecture: arch, source: 'flatpak' }));
  });
  return records.done();
}
