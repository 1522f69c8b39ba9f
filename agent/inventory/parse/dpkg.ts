import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { personName, unixSeconds } from './text.ts';

/**
 * The dpkg-query format the parser reads: one package per line, tab-separated. The
 * Last-Modified of the package's file list is the closest dpkg has to an install date.
 */
export const DPKG_QUERY_FORMAT = '${Package}\\t${Version}\\t${Architecture}\\t${Maintainer}\\t${db-fsys:Last-Modified}\\t${Status}\\n';

const INSTALLED = 'install ok installed';

/** Packages from `dpkg-query -W -f=DPKG_QUERY_FORMAT`; removed-but-configured and half-installed ones are left out. */
export function parseDpkgQuery(text: string): SoftwarePackage[] {
  const packages: SoftwarePackage[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    const fields = line.split('\t');
    if (fields.length !== 6 || fields[0] === '') throw unparsable('dpkg', `expected 6 tab-separated fields, got ${fields.length}`, index + 1);
    const [name, version, architecture, maintainer, lastModified, status] = fields as [string, string, string, string, string, string];
    if (status.trim() !== INSTALLED) return;
    packages.push(softwarePackage({ name, version, architecture, publisher: personName(maintainer), source: 'dpkg', install_date_unix: unixSeconds(lastModified) }));
  });
  return packages;
}
