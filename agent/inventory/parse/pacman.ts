import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
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

/** Packages from `pacman -Qi` (run in the C locale, so dates are in ctime form, local time). */
export function parsePacmanQi(text: string): SoftwarePackage[] {
  return blocks(text).map((block, index) => {
    const fields = fieldsOf(block);
    const name = fields.get('Name');
    const version = fields.get('Version');
    if (!name || !version) throw unparsable('pacman', `block ${index + 1} has no Name or Version`);
    const packager = fields.get('Packager') ?? '';
    return softwarePackage({
      name,
      version,
      architecture: fields.get('Architecture') ?? '',
      publisher: packager === 'Unknown Packager' ? '' : personName(packager),
      source: 'pacman',
      install_date_unix: unixFromDateText(fields.get('Install Date')),
    });
  });
}
