import type { Logger } from 'pino';
import type { Task } from '../model/task.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { TableStores, TransactionScope } from '../store/index.ts';
import { retireHost } from './delete.ts';

/**
 * What a host's record does when one of its tasks finishes through its agent's report, inside the
 * report's transaction (`tx`); the presence and stream effects are queued after commit.
 */
export async function onTaskFinished(deps: { presence: PresenceRegistry; log: Logger }, tx: TransactionScope<TableStores>, task: Task): Promise<void> {
  if (task.type === 'agent_uninstall' && task.state === 'succeeded') {
    await retireHost(deps, tx, task.hostId, task.finishedAt ?? Date.now(), task.createdBy, 'host deleted after remote uninstall');
  }
}
