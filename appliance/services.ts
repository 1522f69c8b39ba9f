import type { AdminAccountService } from './admin/accounts.ts';
import type { AuditService } from './audit/service.ts';
import type { BundleService } from './bundles/service.ts';
import type { ClusterService } from './cluster/service.ts';
import type { EnrolmentService } from './enrolment/service.ts';
import type { HostService } from './hosts/service.ts';
import type { InventoryService } from './inventory/service.ts';
import type { PresenceService } from './presence/service.ts';
import type { ReleaseService } from './releases/service.ts';
import type { RolloutService } from './releases/rollouts.ts';
import type { TaskService } from './tasks/service.ts';

/**
 * The services that own the appliance's workflows, one per area, constructed once in serve.ts and
 * handed to the gRPC and HTTP handlers, which only translate wire ↔ service calls.
 */
export interface Services {
  readonly accounts: AdminAccountService;
  readonly enrolment: EnrolmentService;
  readonly hosts: HostService;
  readonly presence: PresenceService;
  readonly tasks: TaskService;
  readonly bundles: BundleService;
  readonly inventory: InventoryService;
  readonly cluster: ClusterService;
  readonly releases: ReleaseService;
  readonly rollouts: RolloutService;
  /** The audit log: admin actions and security events, recorded at the HTTP edge. */
  readonly audit: AuditService;
}
