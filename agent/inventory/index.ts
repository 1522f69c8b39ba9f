export { collectInventory, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS, type InventoryOptions, type InventoryResult } from './collect.ts';
export type { CollectContext, InventoryCollector } from './collectors/collector.ts';
export { InventoryError, type InventoryErrorCode } from './errors.ts';
export type { SoftwarePackage } from './package.ts';
export { collectionPlanFor, type CollectionPlan, type OptionalSources } from './plan.ts';
export { NOT_AVAILABLE } from './run.ts';
