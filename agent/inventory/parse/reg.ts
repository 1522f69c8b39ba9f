import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { unixFromYyyymmdd } from './text.ts';

const VALUE_LINE = /^ {4}(.+?) {4}(REG_[A-Z_]+)(?: {4}(.*))?$/;

/** The keys of `reg query <key> /s` text, and the lines that are neither a key nor one of its values. */
export interface RegQuery {
  /** Each key's path with its values by lower-cased name. */
  readonly keys: Map<string, Map<string, string>>;
  /** 1-based line numbers and text of lines that could not be read (a value holding a line break). */
  readonly unreadable: { at: number; line: string }[];
}

export function parseRegQuery(text: string): RegQuery {
  const keys = new Map<string, Map<string, string>>();
  const unreadable: RegQuery['unreadable'] = [];
  let current: Map<string, string> | undefined;
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '' || /^End of search:/.test(line)) return;
    if (/^HKEY_/.test(line)) {
      current = new Map();
      keys.set(line.trim(), current);
      return;
    }
    const value = VALUE_LINE.exec(line);
    if (!value || !current) return void unreadable.push({ at: index + 1, line });
    current.set((value[1] as string).toLowerCase(), (value[3] ?? '').trim());
  });
  return { keys, unreadable };
}

/** ReleaseType values of entries that patch another product rather than install one. */
const UPDATE_RELEASE = /^(update|hotfix|security update|service pack|update rollup)$/i;

/**
 * Installed programs from `reg query …\Uninstall /s`. Left out, as Programs and Features leaves
 * them out: keys without DisplayName, SystemComponent=1 entries (parts of another product) and
 * updates of another product (ParentKeyName, or a ReleaseType such as "Security Update"). A
 * program without DisplayVersion or Publisher is a record with those empty; a malformed
 * InstallDate is 0. Lines that cannot be read are skipped and counted (records.ts).
 */
export function parseUninstallKeys(text: string, architecture: string): ParsedPackages {
  const records = new PackageRecords('windows-registry');
  const { keys, unreadable } = parseRegQuery(text);
  for (const { at, line } of unreadable) records.unreadable(at, line);
  for (const values of keys.values()) {
    const name = values.get('displayname') ?? '';
    if (name === '' || /^0x0*1$/i.test(values.get('systemcomponent') ?? '')) continue;
    if ((values.get('parentkeyname') ?? '') !== '' || UPDATE_RELEASE.test(values.get('releasetype') ?? '')) continue;
    records.add(softwarePackage({ name, version: values.get('displayversion') ?? '', architecture, publisher: values.get('publisher') ?? '', source: 'windows-registry', install_date_unix: unixFromYyyymmdd(values.get('installdate')) }));
  }
  return records.done();
}
