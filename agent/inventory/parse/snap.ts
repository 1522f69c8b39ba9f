import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { nonEmptyLines } from './text.ts';

/** Packages from `snap list`; the publisher loses its verified (✓, ✪, *) marks and "-" means none. */
export function parseSnapList(text: string): SoftwarePackage[] {
  const lines = nonEmptyLines(text);
  if (lines.length === 0 || /^No snaps are installed/.test(lines[0] as string)) return [];
  if (!/^Name\s+Version\s+Rev\s+Tracking\s+Publisher\s+Notes\s*$/.test(lines[0] as string)) throw unparsable('snap', 'no "Name Version Rev Tracking Publisher Notes" header', 1);
  return lines.slice(1).flatMap((line, index) => {
    const columns = line.trim().split(/\s+/);
    if (columns.length < 6) throw unparsable('snap', `expected 6 columns, got ${columns.length}`, index + 2);
    const [name, version, , , publisher, notes] = columns as [string, string, string, string, string, string];
    if (notes.split(',').includes('disabled')) return [];
    const cleanPublisher = publisher.replace(/[✓✪*]+$/u, '');
    return [softwarePackage({ name, version, publisher: cleanPublisher === '-' ? '' : cleanPublisher, source: 'snap' })];
  });
}
