import type { Stores } from '../store/index.ts';

export interface SweepResult {
  /** Sent, acknowledged or running tasks whose deadline passed. */
  timedOut: string[];
  /** Queued tasks whose host never connected before expires_at. */
  expired: string[];
}

/**
 * Finishes every task whose deadline or queued expiry is due, in one transaction. TaskService.sweep
 * runs it on a timer; it reads only the partial deadline and expiry indexes, so it is cheap.
 */
export function expireDue(stores: Stores, now: number): Promise<SweepResult> {
  return stores.transact(async (tx) => ({
    timedOut: await tx.tasks.timeoutDue(now, 'ERR_TASK_TIMEOUT'),
    expired: await tx.tasks.expireDue(now, 'ERR_TASK_EXPIRED'),
  }));
}
