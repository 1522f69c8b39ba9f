import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { unixFromYyyymmdd } from './text.ts';

const VALUE_LINE = /^ {4}(.+?) {4}(REG_[A-Z_]+)(?: {4}(.*))?$/;

/** The keys of `reg query <key> /s` text: each key's path with its values by name. */
export function parseRegQuery(text: string): Map<string, Map<string, string>> {
  const keys = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '' || /^End of search:/.test(line)) return;
    if (/^HKEY_/.test(line)) {
      current = new Map();
      keys.set(line.trim(), current);
      return;
    }
    const value = VALUE_LINE.exec(line);
    if (!value || !current) throw unparsable('windows-registry', `unexpected line ${JSON.stringify(line.slice(0, 80))}`, index + 1);
    current.set((value[1] as string).toLowerCase(), (value[3] ?? '').trim());
  });
  return keys;
}

/**
 * Installed programs from `reg query …\Uninstall /s`. Left out, as Programs and Features
 * leaves them out: keys without DisplayName, SystemComponent=1 entries (parts of another
 * product) and entries without DisplayVersion (updates, placeholder entries). A malformed InstallDate is 0.
 */
export function parseUninstallKeys(text: string, architecture: string): SoftwarePackage[] {
  const packages: SoftwarePackage[] = [];
  for (const values of parseRegQuery(text).values()) {
    const name = values.get('displayname') ?? '';
    const version = values.get('displayversion') ?? '';
    if (name === '' || version === '' || /^0x0*1$/i.test(values.get('systemcomponent') ?? '')) continue;
    packages.push(softwarePackage({ name, version, architecture, publisher: values.get('publisher') ?? '', source: 'windows-registry', install_date_unix: unixFromYyyymmdd(values.get('installdate')) }));
  }
  return packages;
}
