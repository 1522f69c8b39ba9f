import { CtOpsError } from '../../common/errors.ts';
import type { Stores, TableStores } from '../store/index.ts';

/**
 * How often an organisation's hosts are scanned, which optional package sources they report, and
 * how long a package no longer found stays on record (days; purged when the host's next scan completes).
 */
export interface InventorySettings {
  intervalHours: number;
  optionalSources: { snap: boolean; flatpak: boolean; windowsStore: boolean };
  removedRetentionDays: number;
}

export type InventorySettingsPatch = Partial<{ intervalHours: number; optionalSources: Partial<InventorySettings['optionalSources']>; removedRetentionDays: number }>;

type OptionalSource = keyof InventorySettings['optionalSources'];

/** Daily scans; the optional sources are off until an admin turns them on (they are slow or noisy); removals kept a quarter. */
export const DEFAULT_INVENTORY_SETTINGS: InventorySettings = Object.freeze({
  intervalHours: 24,
  optionalSources: Object.freeze({ snap: false, flatpak: false, windowsStore: false }),
  removedRetentionDays: 90,
});

/** At least hourly would load the fleet for little news; at most 30 days keeps removals visible. */
export const INVENTORY_INTERVAL_HOURS = { min: 1, max: 720 } as const;
/** At least a day, so a removal is seen; at most ten years. */
export const REMOVED_RETENTION_DAYS = { min: 1, max: 3650 } as const;

const INTERVAL_KEY = 'inventory.interval_hours';
const RETENTION_KEY = 'inventory.removed_retention_days';
const SOURCE_KEYS: Readonly<Record<OptionalSource, string>> = {
  snap: 'inventory.source.snap',
  flatpak: 'inventory.source.flatpak',
  windowsStore: 'inventory.source.windows_store',
};
const SOURCES = Object.keys(SOURCE_KEYS) as OptionalSource[];

const within = (range: { min: number; max: number }) => (value: number): boolean => Number.isInteger(value) && value >= range.min && value <= range.max;
const validInterval = within(INVENTORY_INTERVAL_HOURS);
const validRetention = within(REMOVED_RETENTION_DAYS);
/** A stored whole number, or NaN when the text is not one. */
const storedNumber = (stored: string | undefined): number => (stored !== undefined && /^[0-9]+$/.test(stored) ? Number(stored) : Number.NaN);

/**
 * The organisation's inventory settings. A stored value that does not parse (hand-edited, or
 * written by a later version) reads as its default: a sweeper must never stop on a bad setting.
 */
export async function inventorySettings(stores: Pick<TableStores, 'organisations'>, orgId: string): Promise<InventorySettings> {
  const { organisations } = stores;
  const interval = storedNumber(await organisations.setting(orgId, INTERVAL_KEY));
  const source = async (name: OptionalSource): Promise<boolean> => {
    const stored = await organisations.setting(orgId, SOURCE_KEYS[name]);
    return stored === 'true' ? true : stored === 'false' ? false : DEFAULT_INVENTORY_SETTINGS.optionalSources[name];
  };
  return {
    intervalHours: validInterval(interval) ? interval : DEFAULT_INVENTORY_SETTINGS.intervalHours,
    optionalSources: { snap: await source('snap'), flatpak: await source('flatpak'), windowsStore: await source('windowsStore') },
    removedRetentionDays: await removedRetentionDays(stores, orgId),
  };
}

/** The one setting a completing scan needs (inside its chunk's transaction): removed-row retention in days, as inventorySettings reads it. */
export async function removedRetentionDays(stores: Pick<TableStores, 'organisations'>, orgId: string): Promise<number> {
  const retention = storedNumber(await stores.organisations.setting(orgId, RETENTION_KEY));
  return validRetention(retention) ? retention : DEFAULT_INVENTORY_SETTINGS.removedRetentionDays;
}

/**
 * Changes the settings named in `patch` (the rest stay) in one transaction and returns them
 * all. An interval that is not a whole number of hours from 1 to 720, or a retention that is not
 * a whole number of days from 1 to 3650, changes nothing (ERR_INVALID_ARGUMENT).
 */
export async function updateInventorySettings(stores: Stores, orgId: string, patch: InventorySettingsPatch): Promise<InventorySettings> {
  const { intervalHours, optionalSources = {}, removedRetentionDays } = patch;
  if (intervalHours !== undefined && !validInterval(intervalHours)) {
    throw new CtOpsError(
      'ERR_INVALID_ARGUMENT',
      `the inventory interval must be a whole number of hours from ${INVENTORY_INTERVAL_HOURS.min} to ${INVENTORY_INTERVAL_HOURS.max}, not ${intervalHours}`,
      { field: 'interval_hours' },
    );
  }
  if (removedRetentionDays !== undefined && !validRetention(removedRetentionDays)) {
    throw new CtOpsError(
      'ERR_INVALID_ARGUMENT',
      `the removed-package retention must be a whole number of days from ${REMOVED_RETENTION_DAYS.min} to ${REMOVED_RETENTION_DAYS.max}, not ${removedRetentionDays}`,
      { field: 'removed_retention_days' },
    );
  }
  return stores.transact(async (tx) => {
    if (intervalHours !== undefined) await tx.organisations.putSetting(orgId, INTERVAL_KEY, String(intervalHours));
    if (removedRetentionDays !== undefined) await tx.organisations.putSetting(orgId, RETENTION_KEY, String(removedRetentionDays));
    for (const name of SOURCES) {
      const enabled = optionalSources[name];
      if (enabled !== undefined) await tx.organisations.putSetting(orgId, SOURCE_KEYS[name], String(enabled));
    }
    return inventorySettings(tx, orgId);
  });
}
