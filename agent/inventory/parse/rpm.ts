import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { lines, unixSeconds } from './text.ts';

/** The `rpm -qa --queryformat` the parser reads; rpm prints "(none)" for a tag a package lacks. */
export const RPM_QUERY_FORMAT = '%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{VENDOR}\\t%{INSTALLTIME}\\n';

const NONE = '(none)';

function present(value: string): string {
  return value === NONE ? '' : value;
}

/** EPOCH:VERSION-RELEASE as rpm and dnf print it; the epoch only when the package has one. */
export function rpmVersion(epoch: string, version: string, release: string): string {
  const base = present(release) === '' ? version : `${version}-${release}`;
  return present(epoch) === '' ? base : `${epoch}:${base}`;
}

/**
 * Packages from RPM_QUERY_FORMAT output. Packages without an architecture (gpg-pubkey: "(none)")
 * or a vendor are records like any other; a line without the seven fields is skipped and counted.
 */
export function parseRpmQuery(text: string): ParsedPackages {
  const records = new PackageRecords('rpm');
  for (const { line, at } of lines(text)) {
    const fields = line.split('\t');
    if (fields.length < 7) {
      records.unreadable(at, line);
      continue;
    }
    // Names, versions and arches cannot hold a tab; the vendor is free text and can (seen with real
    // rpm output): it is everything between the arch and the final install time.
    const [name, epoch, version, release, arch] = fields as [string, string, string, string, string];
    const vendor = fields.slice(5, -1).join('\t');
    const installTime = fields.at(-1) as string;
    records.add(softwarePackage({ name, version: rpmVersion(epoch, version, release), architecture: present(arch), publisher: present(vendor), source: 'rpm', install_date_unix: unixSeconds(installTime) }));
  }
  return records.done();
}
