import { MAX_TASK_UPDATE_BYTES_PER_HEARTBEAT, MAX_TASK_UPDATES_PER_HEARTBEAT } from '../../common/heartbeat-limits.ts';
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
   * Moves the oldest pending reports onto the heartbeat with this sequence, at most
   * MAX_TASK_UPDATES_PER_HEARTBEAT of them and MAX_TASK_UPDATE_BYTES_PER_HEARTBEAT of their text
   * (the appliance refuses a heartbeat over either: common/heartbeat-limits.ts), but always the
   * oldest one; the rest stay pending for the next heartbeat.
   */
  takeFor(sequence: number): TaskUpdate[] {
    let count = 0;
    let bytes = 0;
    for (const update of this.pending.slice(0, MAX_TASK_UPDATES_PER_HEARTBEAT)) {
      bytes += encodedBytes(update);
      if (count > 0 && bytes > MAX_TASK_UPDATE_BYTES_PER_HEARTBEAT) break;
      count += 1;
    }
    const taken = this.pending.slice(0, count);
    this.pending = this.pending.slice(count);
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

/** Field tags, lengths and the phase of one encoded report: a few bytes each, counted generously. */
const REPORT_FRAMING_BYTES = 32;

/** An upper bound of a report's protobuf size: its text as UTF-8 plus framing. */
function encodedBytes(update: TaskUpdate): number {
  const texts = [update.task_id, update.error_code, update.message, update.result_json];
  return texts.reduce<number>((sum, text) => sum + (text === undefined ? 0 : Buffer.byteLength(text)), REPORT_FRAMING_BYTES);
}
