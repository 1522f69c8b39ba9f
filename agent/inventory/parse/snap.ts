import { unparsable } from '../errors.ts';
import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';

/**
 * Packages from `snap list`; the publisher loses its verified (✓, ✪, *) marks and "-" means none
 * (sideloaded snaps: revision x1, no tracking, no publisher). Disabled revisions are left out. A
 * line with fewer than the six columns is skipped and counted; output without the header is not
 * snap's list at all and fails the collection.
 */
export function parseSnapList(text: string): ParsedPackages {
  const records = new PackageRecords('snap');
  const lines = text.split(/\r?\n/);
  const header = lines.findIndex((line) => line.trim() !== '');
  if (header === -1 || /^No snaps are installed/.test(lines[header] as string)) return records.done();
  if (!/^Name\s+Version\s+Rev\s+Tracking\s+Publisher\s+Notes\s*$/.test(lines[header] as string)) throw unparsable('snap', 'no "Name Version Rev Tracking Publisher Notes" header', header + 1);
  lines.forEach((line, index) => {
    if (index <= header || line.trim() === '') return;
    const columns = line.trim().split(/\s+/);
    if (columns.length < 6) return records.unreadable(index + 1, line);
    const [name, version, , , publisher, notes] = columns as [string, string, string, string, string, string];
    if (notes.split(',').includes('disabled')) return records.excluded();
    const cleanPublisher = publisher.replace(/[✓✪*]+$/u, '');
    records.add(softwarePackage({ name, version, publisher: cleanPublisher === '-' ? '' : cleanPublisher, source: 'snap' }));
  });
  return records.done();
}
