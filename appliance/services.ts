import type { BundleService } from './bundles/service.ts';
import type { InventoryService } from './inventory/service.ts';
import type { TaskService } from './tasks/service.ts';

/**
 * The services that own the appliance's workflows, one per area, constructed once in serve.ts and
 * handed to the gRPC and HTTP handlers, which only translate wire ↔ service calls.
 */
export interface Services {
  readonly tasks: TaskService;
  readonly bundles: BundleService;
  readonly inventory: InventoryService;
}
