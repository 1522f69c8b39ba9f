import type { AdminClient } from '../../appliance/cli/admin-client.ts';

/** The appliance's event-loop delay over a run, from its runtime report's 10-second windows (ms). */
export interface ApplianceLoopDelay {
  /** Windows that began within the run. */
  windows: number;
  /** The highest p99 of any one window: how late the loop was in the run's worst 10 seconds. */
  worstWindowP99Ms: number;
  /** The longest single delay seen. */
  maxMs: number;
  /** Windows whose longest delay passed 20 ms (issue 14: no periodic pass blocks the loop longer). */
  windowsOver20Ms: number;
}

interface RuntimeReport {
  event_loop: { windows: Array<{ started_at: string; p99_ms: number; max_ms: number }> };
}

/**
 * Reads `GET /api/v1/appliance/runtime?since=` for the windows that began at or after `sinceMs` (ms since the epoch);
 * undefined when the appliance does not answer it (an older appliance), so a run still reports the rest.
 */
export async function applianceLoopDelay(admin: AdminClient, sinceMs: number): Promise<ApplianceLoopDelay | undefined> {
  let report: RuntimeReport;
  try {
    report = await admin.call<RuntimeReport>('GET', `/api/v1/appliance/runtime?since=${encodeURIComponent(new Date(sinceMs).toISOString())}`);
  } catch {
    return undefined;
  }
  // Whole windows of the run only: the one the run began in also holds what came before (a connect storm).
  const windows = report.event_loop.windows.filter((window) => Date.parse(window.started_at) >= sinceMs);
  if (windows.length === 0) return undefined;
  return {
    windows: windows.length,
    worstWindowP99Ms: Math.max(...windows.map((window) => window.p99_ms)),
    maxMs: Math.max(...windows.map((window) => window.max_ms)),
    windowsOver20Ms: windows.filter((window) => window.max_ms > 20).length,
  };
}
