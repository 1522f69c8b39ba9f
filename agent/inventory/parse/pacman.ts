import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { blocks, personName, unixFromDateText } from './text.ts';

/** The "Key : value" fields of one `pacman -Qi` block; indented lines continue the previous value. */
function fieldsOf(block: readonly string[]): Map<string, string> {
  const fields = new Map<string, string>();
  let last: string | undefined;
  for (const line of block) {
    const match = /^(\S[^:]*?)\s*: ?(.*)$/.exec(line);
    if (match && !/^\s/.test(line)) {
      last = match[1] as string;
      fields.set(last, (match[2] as string).trim());
    } else if (last !== undefined) {
      fields.set(last, `${fields.get(last) ?? ''} ${line.trim()}`);
    }
  }
  return fields;
}

/**
 * Packages from `pacman -Qi` (run in the C locale, so dates are in ctime form, local time). A block
 * without a Name field is skipped and counted; a missing Version is an empty one.
 */
export function parsePacmanQi(text: string): ParsedPackages {
  const records = new PackageRecords('pacman');
  blocks(text).forEach((block, index) => {
    const fields = fieldsOf(block);
    const name = fields.get('Name');
    if (name === undefined) return records.unreadable(index + 1, block[0] ?? '');
    const packager = fields.get('Packager') ?? '';
    records.add(softwarePackage({
      name,
      version: fields.get('Version') ?? '',
      architecture: fields.get('Architecture') ?? '',
      publisher: packager === 'Unknown Packager' ? '' : personName(packager),
      source: 'pacman',
      install_date_unix: unixFromDateText(fields.get('Install Date')),
    }));
  });
  return records.done();
}
