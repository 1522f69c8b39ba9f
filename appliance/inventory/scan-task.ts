import { CtOpsError } from '../../common/errors.ts';
import type { TableStores } from '../store/index.ts';

/**
 * A scan names the task that asked for it: that must be one of this host's software_inventory
 * tasks that reached the agent and has not finished. An empty task id is a scan nobody asked for
 * (an admin tool, an older agent): stored, but it completes no task. Read in the chunk's transaction.
 */
export async function checkScanTask(scope: Pick<TableStores, 'tasks'>, hostId: string, taskId: string): Promise<void> {
  if (taskId === '') return;
  const task = await scope.tasks.get(taskId);
  if (!task || task.hostId !== hostId || task.type !== 'software_inventory') {
    throw new CtOpsError('ERR_TASK_NOT_FOUND', 'SoftwareInventoryChunk.task_id names no inventory task of this host', { field: 'task_id' });
  }
  // A sent task is briefly queued again when the heartbeat stream drops before its ack arrives;
  // the agent may be submitting its scan right then (a separate call), so that still counts.
  const open = task.state === 'sent' || task.state === 'acknowledged' || task.state === 'running' || (task.state === 'queued' && task.attempts > 0);
  if (!open) {
    throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `the inventory task is ${task.state}; it takes no scan`, { field: 'task_id', state: task.state });
  }
}
