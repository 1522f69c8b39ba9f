import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { nonEmptyLines } from './text.ts';

/** The columns asked of `flatpak list --app`, printed tab-separated when not on a terminal. */
export const FLATPAK_COLUMNS = 'application,version,branch,arch';

/** Apps from `flatpak list --app --columns=FLATPAK_COLUMNS`; an app without a version is named by its branch. */
export function parseFlatpakList(text: string): SoftwarePackage[] {
  return nonEmptyLines(text).map((line, index) => {
    const fields = line.split('\t');
    if (fields.length !== 4 || fields[0] === '') throw unparsable('flatpak', `expected 4 tab-separated fields, got ${fields.length}`, index + 1);
    const [application, version, branch, arch] = fields.map((field) => field.trim()) as [string, string, string, string];
    return softwarePackage({ name: application, version: version || branch, architecture: arch, source: 'flatpak' });
  });
}
