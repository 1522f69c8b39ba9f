import { setImmediate as yieldToEventLoop } from 'node:timers/promises';

/** What one slice did: the rows it affected, and whether rows it did not reach are left. */
export interface Slice {
  affected: number;
  more: boolean;
}

/**
 * Runs `slice` (one bounded statement) until it says nothing is left, letting the event loop run
 * between slices; the rows affected in all. A retention pass over millions of rows (18,000 agents
 * leave 2 million vitals samples an hour) then never blocks heartbeats for longer than one slice
 * (issue 14: no periodic pass blocks the event loop for more than 20 ms). Without the yield,
 * better-sqlite3's synchronous statements chained by promises would run back to back: microtasks
 * let no I/O in.
 */
export async function inSlices(slice: () => Promise<Slice>): Promise<number> {
  let total = 0;
  for (;;) {
    const { affected, more } = await slice();
    total += affected;
    if (!more) return total;
    await yieldToEventLoop();
  }
}
