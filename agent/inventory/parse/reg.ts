import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { unixFromYyyymmdd } from './text.ts';

const VALUE_LINE = /^ {4}(.+?) {4}(REG_[A-Z_]+)(?: {4}(.*))?$/;

/** The keys of `reg query <key> /s` text, and the lines that are neither a key nor one of its values. */
export interface RegQuery {
  /** Each key's path with its values by lower-cased name. */
  readonly keys: Map<string, Map<string, string>>;
  /** 1-based line numbers and text of lines outside any key that could not be read. */
  readonly unreadable: { at: number; line: string }[];
}

/**
 * Reads `reg query … /s` text: a key line (HKEY_…), its value lines, a blank line, the next key, and
 * at the end one summary line ("End of search: 12 match(es) found.", in the language of Windows).
 * A value holding a line break prints its next lines as they are: inside a key, a line that is not a
 * value line continues the previous value (joined with a space). The summary is known by its shape,
 * not its words: the last line, outside any key, holding a number. Any other line outside a key is unreadable.
 */
export function parseRegQuery(text: string): RegQuery {
  const keys = new Map<string, Map<string, string>>();
  const outside: RegQuery['unreadable'] = [];
  let current: Map<string, string> | undefined;
  let lastValue: string | undefined;
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '') {
      current = undefined;
      return;
    }
    if (/^HKEY_/.test(line)) {
      current = new Map();
      lastValue = undefined;
      keys.set(line.trim(), current);
      return;
    }
    const value = VALUE_LINE.exec(line);
    if (current && value) {
      lastValue = (value[1] as string).toLowerCase();
      current.set(lastValue, (value[3] ?? '').trim());
    } else if (current && lastValue !== undefined) {
      current.set(lastValue, `${current.get(lastValue) ?? ''} ${line.trim()}`.trim());
    } else {
      outside.push({ at: index + 1, line });
    }
  });
  const summary = outside.at(-1);
  const lastLine = text.trimEnd().split(/\r?\n/).length;
  if (summary && summary.at === lastLine && /\d/.test(summary.line)) outside.pop();
  return { keys, unreadable: outside };
}

/** ReleaseType values of entries that patch another product rather than install one. */
const UPDATE_RELEASE = /^(update|hotfix|security update|service pack|update rollup)$/i;

/** One view of the Uninstall key: `reg query` text and the architecture of its programs. */
export interface UninstallView {
  readonly text: string;
  /** "" for the native view (x64 or arm64), "x86" for WOW6432Node. */
  readonly architecture: string;
}

/**
 * Installed programs from `reg query …\Uninstall /s`, one or more views judged as one list (the
 * small WOW6432Node view alone must not decide whether the output was readable). Left out, as
 * Programs and Features leaves them out: keys without DisplayName, SystemComponent=1 entries (parts
 * of another product) and updates of another product (ParentKeyName, or a ReleaseType such as
 * "Security Update"). A program without DisplayVersion or Publisher is a record with those empty;
 * a malformed or implausible InstallDate is 0. Lines that cannot be read are skipped and counted (records.ts).
 */
export function parseUninstallKeys(views: readonly UninstallView[]): ParsedPackages {
  const records = new PackageRecords('windows-registry');
  for (const { text, architecture } of views) {
    const { keys, unreadable } = parseRegQuery(text);
    for (const { at, line } of unreadable) records.unreadable(at, line);
    for (const values of keys.values()) {
      const name = values.get('displayname') ?? '';
      const partOfAnother = name === '' || /^0x0*1$/i.test(values.get('systemcomponent') ?? '');
      if (partOfAnother || (values.get('parentkeyname') ?? '') !== '' || UPDATE_RELEASE.test(values.get('releasetype') ?? '')) {
        records.excluded();
        continue;
      }
      records.add(softwarePackage({ name, version: values.get('displayversion') ?? '', architecture, publisher: values.get('publisher') ?? '', source: 'windows-registry', install_date_unix: unixFromYyyymmdd(values.get('installdate')) }));
    }
  }
  return records.done();
}
