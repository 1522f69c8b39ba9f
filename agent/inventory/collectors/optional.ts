import { APPX_SCRIPT, parseAppxJson } from '../parse/appx.ts';
import { FLATPAK_COLUMNS, parseFlatpakList } from '../parse/flatpak.ts';
import { parseSnapList } from '../parse/snap.ts';
import { NOT_AVAILABLE } from '../run.ts';
import type { InventoryCollector } from './collector.ts';

export const snapCollector: InventoryCollector = {
  name: 'snap',
  async collect({ run }) {
    const output = await run({ command: 'snap', args: ['list'] });
    return output === NOT_AVAILABLE ? output : parseSnapList(output);
  },
};

export const flatpakCollector: InventoryCollector = {
  name: 'flatpak',
  async collect({ run }) {
    const output = await run({ command: 'flatpak', args: ['list', '--app', `--columns=${FLATPAK_COLUMNS}`] });
    return output === NOT_AVAILABLE ? output : parseFlatpakList(output);
  },
};

export const windowsStoreCollector: InventoryCollector = {
  name: 'windows-store',
  async collect({ run }) {
    const output = await run({ command: 'powershell.exe', args: ['-NoProfile', '-NonInteractive', '-Command', APPX_SCRIPT] });
    return output === NOT_AVAILABLE ? output : parseAppxJson(output);
  },
};
