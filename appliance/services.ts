import type { EnrolmentService } from './enrolment/service.ts';
import type { HostService } from './hosts/service.ts';
import type { PresenceService } from './presence/service.ts';

/**
 * The services that own the appliance's workflows, one per area, built once by serve.ts and handed
 * to the gRPC and HTTP handlers, which only translate between the wire and these calls.
 */
export interface Services {
  readonly enrolment: EnrolmentService;
  readonly hosts: HostService;
  readonly presence: PresenceService;
}
