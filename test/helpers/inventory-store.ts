import { indexNameBatches } from '../../appliance/inventory/name-index.ts';
import type { ScanClosingEvent } from '../../appliance/inventory/scan-states.ts';
import type { ChunkInput, ChunkResult } from '../../appliance/model/inventory.ts';
import type { Stores } from '../../appliance/store/index.ts';

/*
 * The inventory store's multi-statement methods run inside stores.transact, as InventoryService
 * calls them; these run one in its own transaction for tests of the store itself (no host checks:
 * those are the service's).
 */

export function addChunk(stores: Stores, input: ChunkInput): Promise<ChunkResult> {
  return stores.transact((tx) => tx.softwareInventory.addChunk(input));
}

export function closeScan(stores: Stores, scanId: string, hostId: string, event: ScanClosingEvent, errorCode: string, now: number): Promise<boolean> {
  return stores.transact((tx) => tx.softwareInventory.closeScan(scanId, hostId, event, errorCode, now));
}

/** Every pending row indexed by name, as InventoryService.indexNames runs its batches (no transaction of its own). */
export function indexNames(stores: Stores): Promise<number> {
  return indexNameBatches(stores.softwareInventory, 1);
}
