import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { blocks, personName } from './text.ts';

/** Where apk keeps its database of installed packages (one "X:value" line per field). */
export const APK_INSTALLED_DB = '/lib/apk/db/installed';

/**
 * Packages from apk's installed database. It records the build time (t:), not when the
 * package was installed, so install_date_unix stays 0. An entry without a P: line is skipped
 * and counted; a missing V: is an empty version.
 */
export function parseApkInstalled(text: string): ParsedPackages {
  const records = new PackageRecords('apk');
  blocks(text).forEach((block, index) => {
    const fields = new Map<string, string>();
    for (const line of block) {
      if (line[1] === ':' && !fields.has(line[0] as string)) fields.set(line[0] as string, line.slice(2));
    }
    const name = fields.get('P');
    if (name === undefined) return records.unreadable(index + 1, block[0] ?? '');
    records.add(softwarePackage({ name, version: fields.get('V') ?? '', architecture: fields.get('A') ?? '', publisher: personName(fields.get('m') ?? ''), source: 'apk' }));
  });
  return records.done();
}
