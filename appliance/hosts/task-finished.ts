import type { Logger } from 'pino';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Stores, Task } from '../store/index.ts';
import { onUninstallSucceeded } from './delete.ts';

/** What a host's record does when one of its tasks finishes through its agent's report. */
export function onTaskFinished(deps: { stores: Stores; presence: PresenceRegistry; log: Logger }, task: Task): void {
  if (task.type === 'agent_uninstall' && task.state === 'succeeded') onUninstallSucceeded(deps, task, task.finishedAt ?? Date.now());
}
