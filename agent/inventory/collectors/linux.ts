import { parseApkInstalled, APK_INSTALLED_DB } from '../parse/apk.ts';
import { DPKG_QUERY_FORMAT, parseDpkgQuery } from '../parse/dpkg.ts';
import { parsePacmanQi } from '../parse/pacman.ts';
import { parseRpmQuery, RPM_QUERY_FORMAT } from '../parse/rpm.ts';
import { NOT_AVAILABLE } from '../run.ts';
import type { InventoryCollector } from './collector.ts';

export const dpkgCollector: InventoryCollector = {
  name: 'dpkg',
  async collect({ run }) {
    const output = await run({ command: 'dpkg-query', args: ['-W', `-f=${DPKG_QUERY_FORMAT}`] });
    return output === NOT_AVAILABLE ? output : parseDpkgQuery(output);
  },
};

export const rpmCollector: InventoryCollector = {
  name: 'rpm',
  async collect({ run }) {
    const output = await run({ command: 'rpm', args: ['-qa', '--queryformat', RPM_QUERY_FORMAT] });
    return output === NOT_AVAILABLE ? output : parseRpmQuery(output);
  },
};

export const pacmanCollector: InventoryCollector = {
  name: 'pacman',
  async collect({ run }) {
    const output = await run({ command: 'pacman', args: ['-Qi'] });
    return output === NOT_AVAILABLE ? output : parsePacmanQi(output);
  },
};

/** apk's own database file: unlike `apk info -v` it records architecture and maintainer. */
export const apkCollector: InventoryCollector = {
  name: 'apk',
  async collect({ readFile }) {
    const text = await readFile(APK_INSTALLED_DB);
    return text === NOT_AVAILABLE ? text : parseApkInstalled(text);
  },
};
