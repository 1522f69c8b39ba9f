import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { lines, personName, unixSeconds } from './text.ts';

/**
 * The dpkg-query format the parser reads: one package per line, tab-separated. The
 * Last-Modified of the package's file list is the closest dpkg has to an install date.
 */
export const DPKG_QUERY_FORMAT = '${Package}\\t${Version}\\t${Architecture}\\t${Maintainer}\\t${db-fsys:Last-Modified}\\t${Status}\\n';

/**
 * The last word of ${Status} ("want error-flag status") for a package whose files are installed and
 * configured: whatever the admin wants next (install, hold — `apt-mark hold` —, deinstall), and
 * also while triggers are pending.
 */
const INSTALLED_STATES = new Set(['installed', 'triggers-pending', 'triggers-awaited']);

/**
 * Packages from `dpkg-query -W -f=DPKG_QUERY_FORMAT`; removed-but-configured and half-installed
 * ones are left out. Every field but the status may be empty (a status entry without a Version,
 * an Architecture-less package): such lines are records too. A line without the six fields is
 * skipped and counted (records.ts).
 */
export function parseDpkgQuery(text: string): ParsedPackages {
  const records = new PackageRecords('dpkg');
  for (const { line, at } of lines(text)) {
    const fields = line.split('\t');
    if (fields.length !== 6) {
      records.unreadable(at, line);
      continue;
    }
    const [name, version, architecture, maintainer, lastModified, status] = fields as [string, string, string, string, string, string];
    if (!INSTALLED_STATES.has(status.trim().split(/\s+/).at(-1) ?? '')) {
      records.excluded();
      continue;
    }
    records.add(softwarePackage({ name, version, architecture, publisher: personName(maintainer), source: 'dpkg', install_date_unix: unixSeconds(lastModified) }));
  }
  return records.done();
}
