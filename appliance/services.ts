import type { InventoryService } from './inventory/service.ts';

/** The appliance's services, one per area, constructed once in serve.ts and handed to the gRPC and HTTP handlers. */
export interface Services {
  readonly inventory: InventoryService;
}
