import { MAX_TASK_UPDATES_PER_HEARTBEAT } from '../../common/heartbeat-limits.ts';
import type { TaskUpdate } from '../../common/proto.ts';

export type { TaskUpdate };

/**
 * Task reports waiting to reach the appliance. A report leaves the queue only when the
 * appliance acknowledges the heartbeat that carried it; if the stream ends first, it goes out
 * again on the next stream, so a lost send never loses a report (the appliance applies each
 * phase once, so a repeat is harmless).
 */
export class TaskUpdateQueue {
  private pending: TaskUpdate[] = [];
  private readonly inFlight = new Map<number, TaskUpdate[]>();

  add(update: TaskUpdate): void {
    this.pending.push(update);
  }

  /**
   * Moves the oldest pending reports, at most MAX_TASK_UPDATES_PER_HEARTBEAT (the appliance
   * refuses a heartbeat with more: common/heartbeat-limits.ts), onto the heartbeat with this
   * sequence; the rest stay pending for the next one.
   */
  takeFor(sequence: number): TaskUpdate[] {
    const taken = this.pending.slice(0, MAX_TASK_UPDATES_PER_HEARTBEAT);
    this.pending = this.pending.slice(taken.length);
    if (taken.length > 0) this.inFlight.set(sequence, taken);
    return taken;
  }

  /** Reports not yet put on a heartbeat. */
  get waiting(): number {
    return this.pending.length;
  }

  /** The appliance acknowledged heartbeats up to this sequence; returns the reports they carried. */
  acknowledge(sequence: number): TaskUpdate[] {
    const delivered: TaskUpdate[] = [];
    for (const [carried, updates] of [...this.inFlight.entries()]) {
      if (carried > sequence) continue;
      this.inFlight.delete(carried);
      delivered.push(...updates);
    }
    return delivered;
  }

  /** The stream ended: unacknowledged reports go out again, oldest first. */
  requeueUnacknowledged(): void {
    const unacknowledged = [...this.inFlight.entries()].sort(([a], [b]) => a - b).flatMap(([, updates]) => updates);
    this.inFlight.clear();
    this.pending = [...unacknowledged, ...this.pending];
  }

  get size(): number {
    return this.pending.length + [...this.inFlight.values()].reduce((sum, updates) => sum + updates.length, 0);
  }
}
