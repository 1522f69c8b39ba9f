import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { lines } from './text.ts';

/** Formula and cask tokens: letters, digits and @ + . _ - (e.g. python@3.12), and / of a tap-qualified name. */
const BREW_NAME = /^[a-z0-9][a-z0-9@+._/-]*$/i;

/**
 * Packages from `brew list --versions --formula` (source "homebrew") or `--cask` (source
 * "homebrew-cask"). A formula kept at several versions lists each: one package per version. A
 * cask installed as "latest" has that as its version; a name listed without a version is a record
 * with an empty one. A line that does not start with a brew name is skipped and counted.
 */
export function parseBrewList(text: string, source: 'homebrew' | 'homebrew-cask'): ParsedPackages {
  const records = new PackageRecords(source);
  for (const { line, at } of lines(text)) {
    const [name = '', ...versions] = line.trim().split(/\s+/);
    if (!BREW_NAME.test(name)) records.unreadable(at, line);
    else for (const version of versions.length > 0 ? versions : ['']) records.add(softwarePackage({ name, version, source }));
  }
  return records.done();
}
