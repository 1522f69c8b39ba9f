import type { InventoryCollector } from './collectors/collector.ts';
import { homebrewCollector, systemProfilerCollector } from './collectors/darwin.ts';
import { apkCollector, dpkgCollector, pacmanCollector, rpmCollector } from './collectors/linux.ts';
import { flatpakCollector, snapCollector, windowsStoreCollector } from './collectors/optional.ts';
import { windowsRegistryCollector } from './collectors/windows.ts';

/** Sources an organisation may switch on in addition to the platform's own. */
export interface OptionalSources {
  readonly snap?: boolean;
  readonly flatpak?: boolean;
  readonly windowsStore?: boolean;
}

export interface CollectionPlan {
  /** Tried in order; the first one present on the host is the system's package list. None present fails the collection. */
  readonly primary: readonly InventoryCollector[];
  /** Each collected when present on the host, skipped when not. */
  readonly additional: readonly InventoryCollector[];
}

/** The one place that picks the collectors for the running platform; undefined where none exist. */
export function collectionPlanFor(platform: NodeJS.Platform, optional: OptionalSources = {}): CollectionPlan | undefined {
  switch (platform) {
    case 'linux':
      return {
        primary: [dpkgCollector, rpmCollector, pacmanCollector, apkCollector],
        additional: [...(optional.snap ? [snapCollector] : []), ...(optional.flatpak ? [flatpakCollector] : [])],
      };
    case 'darwin':
      return { primary: [systemProfilerCollector], additional: [homebrewCollector] };
    case 'win32':
      return { primary: [windowsRegistryCollector], additional: optional.windowsStore ? [windowsStoreCollector] : [] };
    default:
      return undefined;
  }
}
