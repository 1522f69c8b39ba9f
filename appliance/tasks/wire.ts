import type { Task as WireTask } from '../../common/proto.ts';
import type { Task } from '../store/index.ts';
import type { InventorySettings } from '../inventory/settings.ts';

/**
 * The task as the agent receives it. Inventory sources are read from the organisation's settings
 * when the task is sent, so a source switched on while a task waited queued is collected.
 */
export function toWireTask(task: Task, inventory: InventorySettings): WireTask {
  const base = { task_id: task.id, timeout_ms: task.timeoutMs };
  switch (task.type) {
    case 'config_reload':
      return { ...base, config_reload: {} };
    case 'software_inventory': {
      const { snap, flatpak, windowsStore } = inventory.optionalSources;
      return { ...base, software_inventory: { snap, flatpak, windows_store: windowsStore } };
    }
    case 'agent_uninstall':
      return { ...base, agent_uninstall: {} };
  }
}
