import { CtOpsError } from '../../common/errors.ts';
import type { Stores } from '../store/index.ts';

/** How often an organisation's hosts are scanned, and which optional package sources they report. */
export interface InventorySettings {
  intervalHours: number;
  optionalSources: { snap: boolean; flatpak: boolean; windowsStore: boolean };
}

export type InventorySettingsPatch = Partial<{ intervalHours: number; optionalSources: Partial<InventorySettings['optionalSources']> }>;

type OptionalSource = keyof InventorySettings['optionalSources'];

/** Daily scans; the optional sources are off until an admin turns them on (they are slow or noisy). */
export const DEFAULT_INVENTORY_SETTINGS: InventorySettings = Object.freeze({
  intervalHours: 24,
  optionalSources: Object.freeze({ snap: false, flatpak: false, windowsStore: false }),
});

/** At least hourly would load the fleet for little news; at most 30 days keeps removals visible. */
export const INVENTORY_INTERVAL_HOURS = { min: 1, max: 720 } as const;

const INTERVAL_KEY = 'inventory.interval_hours';
const SOURCE_KEYS: Readonly<Record<OptionalSource, string>> = {
  snap: 'inventory.source.snap',
  flatpak: 'inventory.source.flatpak',
  windowsStore: 'inventory.source.windows_store',
};
const SOURCES = Object.keys(SOURCE_KEYS) as OptionalSource[];

const validInterval = (value: number): boolean => Number.isInteger(value) && value >= INVENTORY_INTERVAL_HOURS.min && value <= INVENTORY_INTERVAL_HOURS.max;

/**
 * The organisation's inventory settings. A stored value that does not parse (hand-edited, or
 * written by a later version) reads as its default: a sweeper must never stop on a bad setting.
 */
export function inventorySettings(stores: Stores, orgId: string): InventorySettings {
  const { organisations } = stores;
  const storedInterval = organisations.setting(orgId, INTERVAL_KEY);
  const interval = storedInterval !== undefined && /^[0-9]+$/.test(storedInterval) ? Number(storedInterval) : Number.NaN;
  const source = (name: OptionalSource): boolean => {
    const stored = organisations.setting(orgId, SOURCE_KEYS[name]);
    return stored === 'true' ? true : stored === 'false' ? false : DEFAULT_INVENTORY_SETTINGS.optionalSources[name];
  };
  return {
    intervalHours: validInterval(interval) ? interval : DEFAULT_INVENTORY_SETTINGS.intervalHours,
    optionalSources: { snap: source('snap'), flatpak: source('flatpak'), windowsStore: source('windowsStore') },
  };
}

/**
 * Changes the settings named in `patch` (the rest stay) in one transaction and returns them
 * all. An interval that is not a whole number of hours from 1 to 720 changes nothing.
 */
export function updateInventorySettings(stores: Stores, orgId: string, patch: InventorySettingsPatch): InventorySettings {
  const { intervalHours, optionalSources = {} } = patch;
  if (intervalHours !== undefined && !validInterval(intervalHours)) {
    throw new CtOpsError(
      'ERR_INVALID_ARGUMENT',
      `the inventory interval must be a whole number of hours from ${INVENTORY_INTERVAL_HOURS.min} to ${INVENTORY_INTERVAL_HOURS.max}, not ${intervalHours}`,
      { field: 'interval_hours' },
    );
  }
  return stores.transaction(() => {
    if (intervalHours !== undefined) stores.organisations.putSetting(orgId, INTERVAL_KEY, String(intervalHours));
    for (const name of SOURCES) {
      const enabled = optionalSources[name];
      if (enabled !== undefined) stores.organisations.putSetting(orgId, SOURCE_KEYS[name], String(enabled));
    }
    return inventorySettings(stores, orgId);
  });
}
