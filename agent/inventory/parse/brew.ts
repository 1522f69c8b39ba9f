import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { nonEmptyLines } from './text.ts';

/** Formula and cask tokens: lowercase letters, digits and @ + . _ - (e.g. python@3.12). */
const BREW_NAME = /^[a-z0-9][a-z0-9@+._-]*$/i;

/**
 * Packages from `brew list --versions --formula` (source "homebrew") or `--cask` (source
 * "homebrew-cask"). A formula kept at several versions lists each: one package per version.
 */
export function parseBrewList(text: string, source: 'homebrew' | 'homebrew-cask'): SoftwarePackage[] {
  return nonEmptyLines(text).flatMap((line, index) => {
    const [name, ...versions] = line.trim().split(/\s+/);
    if (!name || !BREW_NAME.test(name) || versions.length === 0) throw unparsable(source, `expected "name version…", got ${JSON.stringify(line)}`, index + 1);
    return versions.map((version) => softwarePackage({ name, version, source }));
  });
}
