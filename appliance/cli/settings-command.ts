import { Command, InvalidArgumentError, Option } from 'commander';
import { AdminClient } from './admin-client.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';
import { printObject } from './output.ts';

type OnOff = 'on' | 'off';

interface InventoryOptions extends CommonOptions {
  intervalHours?: number;
  removedRetentionDays?: number;
  snap?: OnOff;
  flatpak?: OnOff;
  windowsStore?: OnOff;
}

interface InventorySettingsJson {
  interval_hours: number;
  sources: { snap: boolean; flatpak: boolean; windows_store: boolean };
  removed_retention_days: number;
}

const onOff = (flag: string, what: string): Option => new Option(`${flag} <on|off>`, what).choices(['on', 'off']);
const enabled = (value: OnOff | undefined): boolean | undefined => (value === undefined ? undefined : value === 'on');

export function settingsCommand(): Command {
  const settings = new Command('settings').description("show and change the organisation's settings");
  settings
    .command('inventory')
    .description('show the software inventory settings; with options, change those and show the result')
    // Any number goes through: the appliance refuses what is not a whole number of hours from 1 to 720.
    .option('--interval-hours <n>', 'scan every n hours (1-720)', number)
    .option('--removed-retention-days <n>', 'keep packages no longer found for n days (1-3650)', number)
    .addOption(onOff('--snap', 'report snap packages'))
    .addOption(onOff('--flatpak', 'report flatpak packages'))
    .addOption(onOff('--windows-store', 'report Windows Store (AppX) packages'))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: InventoryOptions) => {
      const client = new AdminClient(options.dataDir);
      const sources = { snap: enabled(options.snap), flatpak: enabled(options.flatpak), windows_store: enabled(options.windowsStore) };
      const scalars = { interval_hours: options.intervalHours, removed_retention_days: options.removedRetentionDays };
      const changes = [...Object.values(scalars), ...Object.values(sources)].some((value) => value !== undefined);
      const current = changes
        ? await client.call<InventorySettingsJson>('PATCH', '/api/v1/settings/inventory', { ...scalars, sources })
        : await client.call<InventorySettingsJson>('GET', '/api/v1/settings/inventory');
      const { snap, flatpak, windows_store } = current.sources;
      const { interval_hours, removed_retention_days } = current;
      printObject(options.json ? { ...current } : { interval_hours, snap: onOrOff(snap), flatpak: onOrOff(flatpak), windows_store: onOrOff(windows_store), removed_retention_days }, options.json);
    });
  return settings;
}

const onOrOff = (value: boolean): OnOff => (value ? 'on' : 'off');

function number(value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw new InvalidArgumentError('expected a number');
  return parsed;
}
