import type { CommandResult } from '../../common/proto.ts';

export type { CommandResult };

/**
 * Command results waiting to reach the appliance. A result leaves the queue only when
 * the appliance acknowledges the heartbeat that carried it; if the stream ends first,
 * it goes out again on the next stream, so a lost send never loses a result.
 */
export class CommandResultQueue {
  private pending: CommandResult[] = [];
  private readonly inFlight = new Map<number, CommandResult[]>();

  add(result: CommandResult): void {
    this.pending.push(result);
  }

  /** Moves every pending result onto the heartbeat with this sequence. */
  takeFor(sequence: number): CommandResult[] {
    const taken = this.pending;
    this.pending = [];
    if (taken.length > 0) this.inFlight.set(sequence, taken);
    return taken;
  }

  /** The appliance acknowledged heartbeats up to this sequence. */
  acknowledge(sequence: number): void {
    for (const carried of [...this.inFlight.keys()]) {
      if (carried <= sequence) this.inFlight.delete(carried);
    }
  }

  /** The stream ended: unacknowledged results go out again, oldest first. */
  requeueUnacknowledged(): void {
    const unacknowledged = [...this.inFlight.entries()].sort(([a], [b]) => a - b).flatMap(([, results]) => results);
    this.inFlight.clear();
    this.pending = [...unacknowledged, ...this.pending];
  }

  get size(): number {
    return this.pending.length + [...this.inFlight.values()].reduce((sum, results) => sum + results.length, 0);
  }
}
