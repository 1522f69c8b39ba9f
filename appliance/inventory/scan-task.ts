import { CtOpsError } from '../../common/errors.ts';
import type { Stores } from '../store/index.ts';

/**
 * A scan names the task that asked for it: that must be one of this host's software_inventory
 * tasks, still open (sent, acknowledged or running). An empty task id is a scan nobody asked for
 * (an admin tool, an older agent): stored, but it completes no task.
 */
export function checkScanTask(stores: Stores, hostId: string, taskId: string): void {
  if (taskId === '') return;
  const task = stores.tasks.get(taskId);
  if (!task || task.hostId !== hostId || task.type !== 'software_inventory') {
    throw new CtOpsError('ERR_TASK_NOT_FOUND', 'SoftwareInventoryChunk.task_id names no inventory task of this host', { field: 'task_id' });
  }
  if (!['sent', 'acknowledged', 'running'].includes(task.state)) {
    throw new CtOpsError('ERR_TASK_STATE_CONFLICT', `the inventory task is ${task.state}; it takes no scan`, { field: 'task_id', state: task.state });
  }
}
