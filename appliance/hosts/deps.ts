import type { Logger } from 'pino';
import type { PresenceService } from '../presence/service.ts';
import type { Stores } from '../store/index.ts';
import type { TaskService } from '../tasks/service.ts';

/** What the host workflows (HostService and the functions it calls) work with. */
export interface HostDeps {
  stores: Stores;
  presence: PresenceService;
  tasks: TaskService;
  log: Logger;
}
