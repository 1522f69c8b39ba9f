import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { blocks, personName } from './text.ts';

/** Where apk keeps its database of installed packages (one "X:value" line per field). */
export const APK_INSTALLED_DB = '/lib/apk/db/installed';

/**
 * Packages from apk's installed database. It records the build time (t:), not when the
 * package was installed, so install_date_unix stays 0.
 */
export function parseApkInstalled(text: string): SoftwarePackage[] {
  return blocks(text).map((block, index) => {
    const fields = new Map<string, string>();
    for (const line of block) {
      if (line[1] === ':' && !fields.has(line[0] as string)) fields.set(line[0] as string, line.slice(2));
    }
    const name = fields.get('P');
    const version = fields.get('V');
    if (!name || !version) throw unparsable('apk', `entry ${index + 1} has no P: or V: line`);
    return softwarePackage({ name, version, architecture: fields.get('A') ?? '', publisher: personName(fields.get('m') ?? ''), source: 'apk' });
  });
}
