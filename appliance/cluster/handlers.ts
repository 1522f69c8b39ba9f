import { CtOpsError } from '../../common/errors.ts';
import type { InventoryService } from '../inventory/service.ts';
import type { PresenceService } from '../presence/service.ts';
import type { TaskService } from '../tasks/service.ts';
import type { ClusterHandlers } from './service.ts';

/** The services the cluster's signals and passes reach. */
export interface ClusterServices {
  readonly presence: PresenceService;
  readonly tasks: TaskService;
  readonly inventory: InventoryService;
}

/**
 * What each signal and pass of the cluster (decisions.md 109–110) means to the services that own
 * the workflows: one place, so serve.ts only wires. `services` is read when a signal or pass comes,
 * after start-up built them all (the cluster is built first: presence and tasks publish through it).
 */
export function clusterHandlers(services: () => ClusterServices): ClusterHandlers {
  return {
    signal: (signal) => {
      const { presence, tasks } = services();
      switch (signal.kind) {
        case 'tasks-queued':
          // dispatch sends nothing unless the host streams here.
          void tasks.dispatch(signal.hostId);
          return;
        case 'task-cancelled':
          void tasks.tellCancelled(signal.hostId, signal.taskId);
          return;
        case 'host-closed':
          presence.closedElsewhere(signal.hostId, new CtOpsError(signal.code, signal.message));
          return;
        case 'stream-claimed':
          void presence.claimedElsewhere(signal.hostId, signal.agentInstanceId);
          return;
      }
    },
    lostStreams: async (now) => {
      const { presence, tasks, inventory } = services();
      // What the hosts' going offline implies for tasks and scans, in the transaction that records their disconnect.
      await presence.lostWithInstance(now, async (tx, hostIds) => {
        await tasks.requeueLostIn(tx, hostIds);
        await inventory.abandonScansOfLostIn(tx, Date.now(), hostIds);
      });
    },
    resync: async (missedSince) => {
      const { presence, tasks } = services();
      await presence.reconcile();
      // Signals may have been lost while the listener was away: what they would have started or stopped.
      await tasks.dispatchWaiting();
      if (missedSince !== undefined) await tasks.retellCancelledSince(missedSince);
    },
  };
}
