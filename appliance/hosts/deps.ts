import type { Logger } from 'pino';
import type { PresenceService } from '../presence/service.ts';
import type { Stores } from '../store/index.ts';
import type { TaskDispatcher } from '../tasks/dispatcher.ts';

/** What the host workflows (HostService and the functions it calls) work with. */
export interface HostDeps {
  stores: Stores;
  presence: PresenceService;
  tasks: TaskDispatcher;
  log: Logger;
}
