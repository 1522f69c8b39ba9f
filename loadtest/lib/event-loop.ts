import { monitorEventLoopDelay } from 'node:perf_hooks';

/** Resolution of the delay monitor (ms). */
const SAMPLE_MS = 5;

/**
 * Starts measuring this process's event-loop delay; the function returned stops and reports it (ms).
 * A generator whose own loop is late delays the acks it times, so a run reports this beside its RTTs.
 */
export function probeEventLoopDelay(): () => { p99Ms: number; maxMs: number } {
  const histogram = monitorEventLoopDelay({ resolution: SAMPLE_MS });
  histogram.enable();
  return () => {
    histogram.disable();
    // The histogram records whole sampling intervals; the delay is what exceeds one.
    return { p99Ms: Math.max(0, histogram.percentile(99) / 1e6 - SAMPLE_MS), maxMs: Math.max(0, histogram.max / 1e6 - SAMPLE_MS) };
  };
}
